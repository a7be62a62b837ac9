// Qwen3.5 (qwen35: Gated DeltaNet linear-attention layers and gated full-attention layers) end to
// end on the GPU against llama.cpp's logits (shared/testdata/golden qwen35-tiny-*), with the bar of
// qwen35_test.cpp (issue 16): max nrmse <= 2e-3 on the float file and <= 3e-2 on quantized ones,
// top-1 agreement >= 0.95. All on the GPU: the prompt at once (cuBLAS GEMM, chunked conv and delta
// rule over many tokens), in micro-batches (the recurrent state carried between them), token by
// token (the decode path, CUDA Graphs), and graph replay equal to op-by-op launches exactly. The
// hybrid split with the last 3 of the 4 layers on the GPU (a linear-attention and a full-attention
// layer there, layer 0 and the LM head on the CPU). A truncated session continuing exactly as a
// fresh one (recurrent-state checkpoints taken from and restored to device memory).
//
// Skipped with a message when the build has no CUDA, no GPU can be used, or the test data (the
// model, its .json and its llama.cpp .logits.f32) is absent.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "golden_util.h"
#include "straw/straw.h"
#include "truncate_util.h"

#ifdef STRAW_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace {

using namespace straw::test;

const char* const kFiles[] = {"qwen35-tiny-f16", "qwen35-tiny-q4_k_m", "qwen35-tiny-iq4_xs"};

// These tests are the verification that lets qwen35 onto the GPU: they opt in to the placement
// that src/api/placement.cpp otherwise refuses until they have passed.
bool gpu_usable(std::string* why) {
#ifdef STRAW_HAVE_CUDA
  std::string w;
  if (straw::cuda::cuda_available(&w)) {
    ::setenv("STRAW_CUDA_LINEAR_ATTENTION", "1", 1);
    return true;
  }
  *why = "no usable CUDA device (" + w + "): the qwen35 GPU golden tests need one";
  return false;
#else
  *why = "built without CUDA: configure with -DSTRAW_CUDA=ON to run the qwen35 GPU golden tests";
  return false;
#endif
}

// Whether the golden files of `name` are there: load_llamacpp_golden throws on a missing .json,
// and the GPU check carries only the models it lists (scripts/gpu-check.sh prepare).
bool golden_present(const std::string& name, std::string* why) {
  const fs::path dir = testdata_dir() / "golden";
  const fs::path json = dir / (name + ".json");
  if (!fs::exists(json)) {
    *why = json.string() + " is absent";
    return false;
  }
  const std::string j = slurp(json);
  const fs::path logits = dir / json_field(j, "logits_file");
  const fs::path model = testdata_dir() / "models" / json_field(j, "model");
  for (const fs::path& p : {logits, model})
    if (!fs::exists(p)) {
      *why = p.string() + " is absent";
      return false;
    }
  return true;
}

#define STRAW_REQUIRE_GPU_AND_GOLDEN(name)                  \
  do {                                                      \
    std::string why_;                                       \
    if (!gpu_usable(&why_)) GTEST_SKIP() << why_;           \
    STRAW_REQUIRE_TESTDATA();                               \
    if (!golden_present(name, &why_)) GTEST_SKIP() << why_; \
  } while (0)

// gpu_layers unset: everything on the GPU; N: llama.cpp's -ngl N (the last N layers on the GPU,
// the rest and the output on the CPU), the hybrid executor's path.
std::unique_ptr<straw::Model> load_on_gpu(const Golden& g, bool graphs,
                                          std::optional<int> gpu_layers = std::nullopt,
                                          int ubatch = 512) {
  straw::ModelOptions o;
  o.path = (testdata_dir() / "models" / g.model).string();
  o.threads = 2;
  o.device = gpu_layers ? straw::DeviceChoice::Auto : straw::DeviceChoice::Gpu;
  o.gpu_layers = gpu_layers;
  o.cuda_graphs = graphs;
  o.ubatch = ubatch;
  auto m = straw::Model::load(o);
  std::printf("%-20s placement: %s\n", g.model.c_str(), m->info().placement.c_str());
  return m;
}

// The model is really on the GPU: a placement that fell back to the CPU would pass the bar and
// test nothing. "gpu: U/8 layer parts" counts attention and FFN parts of the 4 layers.
void expect_placement(const straw::Model& m, const std::string& parts) {
  const std::string& p = m.info().placement;
  EXPECT_EQ(p.rfind("gpu:", 0), 0u) << p;
  EXPECT_NE(p.find(parts), std::string::npos) << "expected " << parts << " in: " << p;
}

void expect_qwen35_bar(const std::string& name, const Golden& g, const Score& s,
                       const std::string& what) {
  const bool float_file = name.find("f16") != std::string::npos;
  const double bar = float_file ? 2e-3 : 3e-2;
  std::printf("%-20s %-28s max_nrmse %.3e (bar %.0e; llama.cpp ub1 vs ub512 %.3e)  top1 %.3f\n",
              name.c_str(), what.c_str(), s.max_nrmse, bar, g.ref_max_nrmse, s.top1);
  EXPECT_LE(s.max_nrmse, bar) << name << " " << what;
  EXPECT_GE(s.top1, 0.95) << name << " " << what;
}

class CudaQwen35Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaQwen35Golden, AllOnTheGpuPromptAtOnceAndMicroBatchesMeetTheBar) {
  STRAW_REQUIRE_GPU_AND_GOLDEN(GetParam());
  const Golden g = load_llamacpp_golden(GetParam());
  auto m = load_on_gpu(g, true);
  ASSERT_EQ(m->n_vocab(), g.n_vocab);
  ASSERT_EQ(m->info().architecture, "qwen35");
  ASSERT_EQ(m->info().n_layer, 4);
  expect_placement(*m, "8/8 layer parts + output");
  expect_qwen35_bar(GetParam(), g, score(g, prefill_logits(*m, g)), "gpu prompt at once");
  // Micro-batches of 40: the conv and delta-rule states carried from one to the next, a tail of
  // 14 tokens.
  expect_qwen35_bar(GetParam(), g, score(g, prefill_logits(*load_on_gpu(g, true, {}, 40), g)),
                    "gpu micro-batches of 40");
}

TEST_P(CudaQwen35Golden, AllOnTheGpuTokenByTokenMeetsTheBarAndGraphsChangeNothing) {
  STRAW_REQUIRE_GPU_AND_GOLDEN(GetParam());
  const Golden g = load_llamacpp_golden(GetParam());
  auto with = load_on_gpu(g, true);
  const std::vector<std::vector<float>> a = token_by_token(*with, g);
  expect_qwen35_bar(GetParam(), g, score(g, a), "gpu token by token");
  auto without = load_on_gpu(g, false);
  const std::vector<std::vector<float>> b = token_by_token(*without, g);
  ASSERT_EQ(a.size(), b.size());
  for (size_t p = 0; p < a.size(); ++p)
    ASSERT_EQ(a[p], b[p]) << "CUDA Graph replay differs from op-by-op launches at position " << p;
}

// -ngl 3: layers 1 (full attention), 2 (linear) and 3 (full attention) on the GPU, layer 0 (linear)
// and the LM head on the CPU, so each step crosses devices twice and the recurrent states live on
// both.
TEST_P(CudaQwen35Golden, HybridSplitMeetsTheBar) {
  STRAW_REQUIRE_GPU_AND_GOLDEN(GetParam());
  const Golden g = load_llamacpp_golden(GetParam());
  auto m = load_on_gpu(g, true, 3);
  expect_placement(*m, "6/8 layer parts");
  EXPECT_EQ(m->info().placement.find("+ output"), std::string::npos) << m->info().placement;
  expect_qwen35_bar(GetParam(), g, score(g, prefill_logits(*m, g)), "hybrid prompt at once");
  expect_qwen35_bar(GetParam(), g, score(g, token_by_token(*m, g)), "hybrid token by token");
}

INSTANTIATE_TEST_SUITE_P(Models, CudaQwen35Golden,
                         ::testing::Values(kFiles[0], kFiles[1], kFiles[2]), [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(CudaQwen35, TruncatedSessionContinuesAsIfFreshOnTheGpuAndSplit) {
  STRAW_REQUIRE_GPU_AND_GOLDEN("qwen35-tiny-q4_k_m");
  const Golden g = load_llamacpp_golden("qwen35-tiny-q4_k_m");
  {
    SCOPED_TRACE("all on the GPU");
    auto m = load_on_gpu(g, true);
    expect_truncation_continues_as_fresh(*m, g);
  }
  {
    SCOPED_TRACE("hybrid, -ngl 3");
    auto m = load_on_gpu(g, true, 3);
    expect_truncation_continues_as_fresh(*m, g);
  }
}

}  // namespace
