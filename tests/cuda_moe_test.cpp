// The CUDA mixture-of-experts ops and models (qwen3moe, qwen35moe) on a GPU; skipped with a message
// without one (and without the test data for the model tests).
//
// Ops: moe_route against the CPU's (the same experts, weights within 1e-6); moe_matmul for every
// CUDA format against float64 dots of the scalar reference's dequantized expert rows, over routings
// with experts of 0, 1 and many slots, every slot on one expert, inputs per token and per slot, and
// 1..40 tokens (the device-side grouping, the runs of up to 8 slots and their tails); moe_combine
// and sigmoid_scale_rows against the CPU's.
//
// Models, against llama.cpp's logits with issue 17's bar (moe_golden_util.h): everything on the
// GPU (prompt at once and token by token, CUDA Graph replay equal to op-by-op launches), and the
// experts on the CPU with the rest on the GPU (--cpu-moe: the routed tokens cross over).
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "moe_golden_util.h"
#include "quant/quant.h"
#include "straw/straw.h"

#ifdef STRAW_HAVE_CUDA
#include "cuda/cuda_backend.h"
#include "cuda_test_util.h"
#endif

namespace {

using namespace straw;
using namespace straw::test;

#ifdef STRAW_HAVE_CUDA

using quant::Type;

class CudaMoe : public CudaOpsTest {
 protected:
  CudaMoe() : CudaOpsTest(20261207) {}

  std::unique_ptr<ops::Buffer> up_ids(const std::vector<int32_t>& ids) {
    auto b = gpu_->alloc(ids.size() * sizeof(int32_t));
    gpu_->from_host(ids.data(), b->data(), ids.size() * sizeof(int32_t));
    return b;
  }
  std::vector<int32_t> down_ids(const ops::Buffer& b, size_t n) {
    std::vector<int32_t> v(n);
    gpu_->to_host(const_cast<ops::Buffer&>(b).data(), v.data(), n * sizeof(int32_t));
    return v;
  }

  // Host weights, kept for the fixture's life (the backend finds uploads by host address).
  std::vector<std::vector<uint8_t>> weights_;
};

TEST_F(CudaMoe, RouteChoosesTheCpusExpertsAndWeights) {
  for (int E : {8, 60, 128, 256})
    for (int K : {1, 2, 8})
      for (int T : {1, 7, 33})
        for (bool normalize : {true, false})
          for (float scale : {0.0f, 2.5f}) {
            const std::vector<float> logits = random(size_t(T) * E, -4.0f, 4.0f);
            std::vector<int32_t> ids(size_t(T) * K);
            std::vector<float> w(ids.size());
            cpu_.moe_route(logits.data(), T, E, K, normalize, scale, ids.data(), w.data());
            auto ld = up(logits);
            auto idd = up_ids(std::vector<int32_t>(ids.size(), -1));
            auto wd = poisoned(w.size());
            gpu_->moe_route(static_cast<float*>(ld->data()), T, E, K, normalize, scale,
                            static_cast<int32_t*>(idd->data()), static_cast<float*>(wd->data()));
            const std::string what = "E " + std::to_string(E) + " K " + std::to_string(K) + " T " +
                                     std::to_string(T) + (normalize ? " normalized" : "") +
                                     " scale " + std::to_string(scale);
            EXPECT_EQ(down_ids(*idd, ids.size()), ids) << what;
            EXPECT_LE(rel_error(down(*wd, w.size()), w), 1e-6) << what;
          }
}

struct Routing {
  const char* name;
  std::vector<int32_t> ids;  // [T][K]
};

// Routings of T tokens x K slots over E experts: K distinct random experts per token (as the
// router chooses), every slot on expert 3, and a skewed one (expert 0 takes the first slot of
// every token, experts 1 .. E - 2 the others in turn, expert E - 1 only the very last slot).
std::vector<Routing> routings(int T, int K, int E, std::mt19937& rng) {
  std::vector<Routing> out;
  Routing r{"random", {}};
  std::vector<int32_t> all(static_cast<size_t>(E));
  std::iota(all.begin(), all.end(), 0);
  for (int t = 0; t < T; ++t) {
    std::shuffle(all.begin(), all.end(), rng);
    r.ids.insert(r.ids.end(), all.begin(), all.begin() + K);
  }
  out.push_back(r);
  out.push_back({"all on one expert", std::vector<int32_t>(size_t(T) * K, 3)});
  Routing s{"skewed", std::vector<int32_t>(size_t(T) * K, 0)};
  for (int t = 0; t < T; ++t)
    for (int k = 1; k < K; ++k) s.ids[size_t(t) * K + k] = 1 + (t + k) % (E - 2);
  s.ids[size_t(T) * K - 1] = E - 1;
  out.push_back(s);
  return out;
}

TEST_F(CudaMoe, MatmulMatchesTheReferenceForEveryFormatAndRouting) {
  const Type types[] = {Type::F32,  Type::F16,  Type::BF16, Type::Q4_0,   Type::Q4_1,
                        Type::Q5_0, Type::Q5_1, Type::Q8_0, Type::IQ4_NL, Type::IQ4_XS,
                        Type::Q4_K, Type::Q5_K, Type::Q6_K};
  const int E = 16;
  const int64_t n_in = 512, n_out = 67;  // 2 super-blocks; rows not a multiple of 4 warps
  for (Type t : types) {
    // E matrices of [n_out][n_in], expert_bytes apart, uploaded once (kept for the backend's life).
    const size_t rb = quant::row_bytes(t, n_in), eb = rb * n_out;
    auto& bytes = weights_.emplace_back(eb * E);
    const std::vector<float> f = random(size_t(E) * n_out * n_in);
    for (int64_t r = 0; r < E * n_out; ++r)
      quant::quantize_row(t, f.data() + r * n_in, bytes.data() + r * rb, n_in);
    ops::Weight w{t, n_in, n_out, rb, bytes.data(), 0, E, eb};
    const ops::Weight wd = gpu_->prepare_weight(w);
    // Dequantized rows of every expert, for the reference.
    std::vector<float> deq(size_t(E) * n_out * n_in);
    for (int64_t r = 0; r < E * n_out; ++r)
      quant::dequantize_row(t, bytes.data() + r * rb, deq.data() + r * n_in, n_in);
    const bool quantized = !(t == Type::F32 || t == Type::F16 || t == Type::BF16);
    for (int T : {1, 2, 5, 8, 9, 40})
      for (int K : {1, 4})
        for (const Routing& rt : routings(T, K, E, rng_))
          for (bool per_slot : {false, true}) {
            const int S = T * K;
            const std::vector<float> x = random(size_t(per_slot ? S : T) * n_in);
            std::vector<float> ref(size_t(S) * n_out);
            for (int s = 0; s < S; ++s) {
              const float* xs = x.data() + size_t(per_slot ? s : s / K) * n_in;
              const float* we = deq.data() + size_t(rt.ids[size_t(s)]) * n_out * n_in;
              for (int64_t o = 0; o < n_out; ++o) {
                double acc = 0;
                for (int64_t i = 0; i < n_in; ++i) acc += double(we[o * n_in + i]) * xs[i];
                ref[size_t(s) * n_out + o] = float(acc);
              }
            }
            auto xd = up(x);
            auto idd = up_ids(rt.ids);
            auto yd = poisoned(ref.size());
            gpu_->moe_matmul(wd, static_cast<float*>(xd->data()), per_slot,
                             static_cast<int32_t*>(idd->data()), T, K,
                             static_cast<float*>(yd->data()));
            EXPECT_LE(rel_error(down(*yd, ref.size()), ref), quantized ? 2e-2 : 1e-5)
                << quant::type_name(t) << " T " << T << " K " << K << " " << rt.name
                << (per_slot ? " per slot" : " per token");
          }
  }
}

TEST_F(CudaMoe, CombineAndSigmoidScaleRowsMatchTheCpu) {
  for (int K : {1, 2, 8}) {
    const int T = 5;
    const int64_t width = 300;
    const std::vector<float> y = random(size_t(T) * K * width), w = random(size_t(T) * K, 0, 1);
    std::vector<float> ref(size_t(T) * width);
    cpu_.moe_combine(y.data(), w.data(), T, K, width, ref.data());
    auto yd = up(y), wd = up(w);
    auto od = poisoned(ref.size());
    gpu_->moe_combine(static_cast<float*>(yd->data()), static_cast<float*>(wd->data()), T, K, width,
                      static_cast<float*>(od->data()));
    EXPECT_LE(rel_error(down(*od, ref.size()), ref), 1e-6) << "moe_combine K " << K;
  }
  const int64_t rows = 7, width = 333;
  std::vector<float> y = random(size_t(rows * width));
  const std::vector<float> g = random(size_t(rows), -6.0f, 6.0f);
  auto yd = up(y), gd = up(g);
  cpu_.sigmoid_scale_rows(y.data(), g.data(), rows, width);
  gpu_->sigmoid_scale_rows(static_cast<float*>(yd->data()), static_cast<float*>(gd->data()), rows,
                           width);
  EXPECT_LE(rel_error(down(*yd, y.size()), y), 1e-6) << "sigmoid_scale_rows";
}

#endif  // STRAW_HAVE_CUDA

// ---- models -------------------------------------------------------------------------------------

const char* const kFiles[] = {"qwen3moe-tiny-q4_k_m", "qwen3moe-tiny-iq4_xs",
                              "qwen35moe-tiny-q4_k_m", "qwen35moe-tiny-iq4_xs"};

// These tests are the verification that lets MoE FFNs (and qwen35moe's linear-attention layers)
// onto the GPU: they opt in to the placement that src/api/placement.cpp otherwise refuses.
bool gpu_usable(std::string* why) {
#ifdef STRAW_HAVE_CUDA
  std::string w;
  if (cuda::cuda_available(&w)) {
    ::setenv("STRAW_CUDA_MOE", "1", 1);
    ::setenv("STRAW_CUDA_LINEAR_ATTENTION", "1", 1);
    return true;
  }
  *why = "no usable CUDA device (" + w + "): the MoE GPU model tests need one";
#else
  *why = "built without CUDA: configure with -DSTRAW_CUDA=ON to run the MoE GPU model tests";
#endif
  return false;
}

// all_gpu: every layer and its experts on the GPU; else the experts on the CPU (--cpu-moe) and the
// rest on the GPU.
std::unique_ptr<Model> load_moe(const Golden& g, bool all_gpu, bool graphs = true) {
  ModelOptions o;
  o.path = (testdata_dir() / "models" / g.model).string();
  o.threads = 2;
  o.device = all_gpu ? DeviceChoice::Gpu : DeviceChoice::Auto;
  if (!all_gpu) o.n_cpu_moe = INT_MAX;
  o.cuda_graphs = graphs;
  auto m = Model::load(o);
  std::printf("%-22s placement: %s\n", g.model.c_str(), m->info().placement.c_str());
  return m;
}

// The placement really is what the test means: "the experts of E/M layers" on the GPU.
void expect_experts_on_gpu(const Model& m, int n) {
  const std::string& p = m.info().placement;
  const std::string want =
      "the experts of " + std::to_string(n) + "/" + std::to_string(m.info().n_layer) + " layers";
  EXPECT_EQ(p.rfind("gpu:", 0), 0u) << p;
  EXPECT_NE(p.find(want), std::string::npos) << "expected " << want << " in: " << p;
}

class CudaMoeGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaMoeGolden, AllOnTheGpuMeetsTheBarAndGraphsChangeNothing) {
  std::string why;
  if (!gpu_usable(&why)) GTEST_SKIP() << why;
  STRAW_REQUIRE_TESTDATA();
  const Golden g = load_reference(GetParam());
  STRAW_REQUIRE_MODEL(g);
  auto m = load_moe(g, true);
  expect_experts_on_gpu(*m, m->info().n_layer);
  expect_moe_bar(GetParam(), g, prefill_logits(*m, g), "gpu prompt at once");
  const std::vector<std::vector<float>> a = token_by_token(*m, g);
  expect_moe_bar(GetParam(), g, a, "gpu token by token");
  const std::vector<std::vector<float>> b = token_by_token(*load_moe(g, true, false), g);
  ASSERT_EQ(a.size(), b.size());
  for (size_t p = 0; p < a.size(); ++p)
    ASSERT_EQ(a[p], b[p]) << "CUDA Graph replay differs from op-by-op launches at position " << p;
}

TEST_P(CudaMoeGolden, ExpertsOnTheCpuTheRestOnTheGpuMeetTheBar) {
  std::string why;
  if (!gpu_usable(&why)) GTEST_SKIP() << why;
  STRAW_REQUIRE_TESTDATA();
  const Golden g = load_reference(GetParam());
  STRAW_REQUIRE_MODEL(g);
  auto m = load_moe(g, false);
  expect_experts_on_gpu(*m, 0);
  expect_moe_bar(GetParam(), g, prefill_logits(*m, g), "--cpu-moe prompt at once");
  expect_moe_bar(GetParam(), g, token_by_token(*m, g), "--cpu-moe token by token");
}

INSTANTIATE_TEST_SUITE_P(Models, CudaMoeGolden,
                         ::testing::Values(kFiles[0], kFiles[1], kFiles[2], kFiles[3]),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
