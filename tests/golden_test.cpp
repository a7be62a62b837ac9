// End-to-end on the CPU: straw's logits for every golden model against exact (float64) math, with
// the bar of shared/testdata/README.md (max_nrmse <= 1.25 x llama.cpp's + 1e-4, top-1 agreement >=
// llama.cpp's - 0.02), and the stories260K greedy continuation equal to llama.cpp's, token for
// token. A q8_0 KV cache stays close to the f16 cache's distance.
#include <gtest/gtest.h>

#include <filesystem>
#include <tuple>

#include "golden_util.h"
#include "straw/straw.h"

namespace {

using namespace straw::test;

std::unique_ptr<straw::Model> load_on_cpu(const Golden& g,
                                          straw::KvCacheType k = straw::KvCacheType::F16,
                                          straw::KvCacheType v = straw::KvCacheType::F16) {
  straw::ModelOptions o;
  o.path = (testdata_dir() / "models" / g.model).string();
  o.threads = 2;
  o.device = straw::DeviceChoice::Cpu;
  o.kv_type_k = k;
  o.kv_type_v = v;
  return straw::Model::load(o);
}

class GoldenLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenLogits, MeetsTheBarAgainstExactMath) {
  STRAW_REQUIRE_TESTDATA();
  const Golden g = load_golden(GetParam());
  auto model = load_on_cpu(g);
  ASSERT_EQ(model->n_vocab(), g.n_vocab);
  ASSERT_EQ(g.exact.size(), g.tokens.size() * size_t(g.n_vocab));
  expect_bar(g, score(g, prefill_logits(*model, g)), GetParam() + " cpu prompt");
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenLogits,
                         ::testing::Values("llama-tiny-f16", "llama-tiny-iq4_xs",
                                           "llama-tiny-q4_k_m", "qwen2-tiny-f32",
                                           "qwen2-tiny-iq4_xs", "qwen2-tiny-q4_k_m",
                                           "qwen2-tiny-q8_0", "qwen3-tiny-f16", "qwen3-tiny-iq4_xs",
                                           "qwen3-tiny-q4_k_m", "stories260K", "stories260K-q8_0"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// Rounding the cached keys and values to 8 bits per element (one scale per 32) moves the logits by
// about 4e-3 nrmse on these models (measured 2026-11-27: 3.9e-3..4.6e-3 above the f16 cache on the
// F16/F32 files, less than the weights' own rounding on the quantized ones); 1e-2 catches a wrong
// layout or scale, which moves them by order 1.
// Q4_0 (4 bits, one scale per 32: a step 16x coarser) moves them 16x as much: measured 2026-12-05,
// 5.0e-2..7.9e-2 above the f16 cache (q8_0 K with q4_0 V: the same, the V rounding dominates), and
// the top-1 agreement drops by up to 0.096 (qwen2-tiny-q4_k_m). The bounds are about twice that.
// With the same cache types straw lands at 0.75x..1.16x llama.cpp's distance (q4_0 on
// qwen2-tiny-q4_k_m: straw 8.70e-2, llama.cpp 7.53e-2; tests/data/kv_quant). Scoring Q8_0 / Q4_0
// keys against a query quantized to 8 bits (as llama.cpp does; 2026-12-06) moved these by under
// 1e-3 (q8_0 on the F16/F32 files: 3.7e-3..4.8e-3 above the f16 cache; straw/llama.cpp
// 0.74x..1.16x).
struct KvBound {
  straw::KvCacheType k, v;
  const char* name;
  double max_above_f16;  // max_nrmse may exceed the f16 cache's by this much
  double top1_slack;     // top-1 agreement may fall this far below llama.cpp's
  const char* llamacpp;  // its key in tests/data/kv_quant/llamacpp.json
};

// llama.cpp's max nrmse against exact math for a model and K/V types (tests/data/kv_quant).
double llamacpp_kv_nrmse(const std::string& model, const std::string& types) {
  const std::string j = slurp(std::filesystem::path(STRAW_SOURCE_DIR) / "tests" / "data" /
                              "kv_quant" / "llamacpp.json");
  const size_t at = j.find("\"" + model + "\"");
  if (at == std::string::npos) return 0;
  return std::stod(json_field(j.substr(at, j.find('}', at) - at), types));
}

TEST(Golden, QuantizedKvCacheStaysCloseToTheF16Cache) {
  STRAW_REQUIRE_TESTDATA();
  using straw::KvCacheType;
  const KvBound bounds[] = {
      {KvCacheType::Q8_0, KvCacheType::Q8_0, "q8_0", 1e-2, 0.02, "q8_0/q8_0"},
      {KvCacheType::Q4_0, KvCacheType::Q4_0, "q4_0", 0.15, 0.2, "q4_0/q4_0"},
      {KvCacheType::Q8_0, KvCacheType::Q4_0, "q8_0/q4_0", 0.15, 0.2, "q8_0/q4_0"},
  };
  for (const char* name : {"llama-tiny-f16", "qwen2-tiny-f32", "qwen3-tiny-f16",
                           "qwen2-tiny-q4_k_m", "qwen3-tiny-iq4_xs"}) {
    const Golden g = load_golden(name);
    STRAW_REQUIRE_MODEL(g);
    const Score f16 = score(g, prefill_logits(*load_on_cpu(g), g));
    for (const KvBound& b : bounds) {
      const double ref = llamacpp_kv_nrmse(name, b.llamacpp);
      ASSERT_GT(ref, 0.0) << name << " " << b.llamacpp << " missing in llamacpp.json";
      auto model = load_on_cpu(g, b.k, b.v);
      // The prompt at once (the prefill kernels) and one token per call (the fused decode, whose
      // P.V over a quantized V cache runs in 16-bit integers on AVX-512).
      for (const bool one_by_one : {false, true}) {
        const std::string what = std::string(b.name) + (one_by_one ? " token by token" : "");
        const Score q =
            score(g, one_by_one ? token_by_token(*model, g) : prefill_logits(*model, g));
        std::printf("%-20s %-24s KV max_nrmse %.3e (f16 KV %.3e, +%.3e)  top1 %.3f (%.3f)\n", name,
                    what.c_str(), q.max_nrmse, f16.max_nrmse, q.max_nrmse - f16.max_nrmse, q.top1,
                    f16.top1);
        EXPECT_LE(q.max_nrmse, f16.max_nrmse + b.max_above_f16) << name << " " << what;
        // llama.cpp with the same cache types (flash attention; measured, tests/data/kv_quant):
        // straw's distance at most 1.25x its own (the golden bar's ratio).
        std::printf("%-20s %-24s KV llama.cpp max_nrmse %.3e, straw/llama.cpp %.2f\n", name,
                    what.c_str(), ref, q.max_nrmse / ref);
        EXPECT_LE(q.max_nrmse, 1.25 * ref + 1e-4) << name << " " << what;
        EXPECT_GE(q.top1, g.ref_top1 - b.top1_slack) << name << " " << what;
      }
    }
  }
}

// Every kernel level this CPU has, end to end (the other tests run the best one only).
TEST(Golden, EveryCpuKernelLevelMeetsTheBar) {
  STRAW_REQUIRE_TESTDATA();
  using straw::CpuKernels;
  const std::pair<CpuKernels, const char*> levels[] = {{CpuKernels::Amx, "amx"},
                                                       {CpuKernels::Avx512, "avx512"},
                                                       {CpuKernels::AvxVnni, "avx-vnni"},
                                                       {CpuKernels::Avx2, "avx2"},
                                                       {CpuKernels::Scalar, "scalar"}};
  for (const char* name :
       {"qwen2-tiny-iq4_xs", "llama-tiny-q4_k_m", "qwen2-tiny-q8_0", "qwen3-tiny-f16"}) {
    const Golden g = load_golden(name);
    STRAW_REQUIRE_MODEL(g);
    for (const auto& [level, level_name] : levels) {
      straw::ModelOptions o;
      o.path = (testdata_dir() / "models" / g.model).string();
      o.threads = 2;
      o.device = straw::DeviceChoice::Cpu;
      o.cpu_kernels = level;
      std::unique_ptr<straw::Model> model;
      try {
        model = straw::Model::load(o);
      } catch (const straw::Error&) {
        continue;  // this CPU lacks the level (the message is tested elsewhere)
      }
      expect_bar(g, score(g, prefill_logits(*model, g)), std::string(name) + " " + level_name);
    }
  }
}

TEST(Golden, QuantizedKvCacheNeedsHeadSizesOf32) {
  STRAW_REQUIRE_TESTDATA();
  using straw::KvCacheType;
  const Golden g = load_golden("stories260K");  // head size 8
  for (const auto& [k, v, which] : {std::tuple{KvCacheType::Q8_0, KvCacheType::F16, "K cache"},
                                    std::tuple{KvCacheType::F16, KvCacheType::Q4_0, "V cache"}}) {
    auto model = load_on_cpu(g, k, v);
    try {
      straw::Session session(*model);
      ADD_FAILURE() << "a quantized " << which << " with head size 8 was accepted";
    } catch (const straw::Error& e) {
      EXPECT_NE(std::string(e.what()).find("multiple of 32"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(which), std::string::npos) << e.what();
    }
  }
}

TEST(Golden, TruncatedSessionContinuesAsIfFresh) {
  STRAW_REQUIRE_TESTDATA();
  const Golden g = load_golden("qwen2-tiny-q4_k_m");
  STRAW_REQUIRE_MODEL(g);
  auto model = load_on_cpu(g);
  const size_t half = g.tokens.size() / 2;
  const std::span<const int32_t> all(g.tokens);
  straw::Session fresh(*model);
  fresh.eval(all.first(half));
  fresh.eval(all.subspan(half));
  const std::vector<float> want(fresh.logits().begin(), fresh.logits().end());
  // The same tokens in one session, cut back to the first half, the second half overwritten with
  // other tokens, cut back again and evaluated again: the same logits, bit for bit.
  straw::Session s(*model);
  s.eval(all.first(half));
  s.eval(all.subspan(half));
  s.truncate(int64_t(half));
  std::vector<int32_t> other(g.tokens.size() - half, 7);
  s.eval(other);
  s.truncate(int64_t(half));
  EXPECT_EQ(s.n_past(), int64_t(half));
  s.eval(all.subspan(half));
  const std::vector<float> got(s.logits().begin(), s.logits().end());
  EXPECT_EQ(got, want);
  EXPECT_THROW(s.truncate(s.n_past() + 1), straw::Error);
}

TEST(Golden, Stories260KGreedyContinuationMatchesLlamaCpp) {
  STRAW_REQUIRE_TESTDATA();
  const Golden g = load_golden("stories260K");
  ASSERT_FALSE(g.greedy.empty());
  auto model = load_on_cpu(g);
  straw::Session session(*model);
  straw::GenerateOptions opt;
  opt.n_predict = int(g.greedy.size());
  opt.sampling.temperature = 0.0f;
  opt.stop_at_eog = false;
  straw::GenerateResult r = straw::generate(session, g.tokens, opt, nullptr);
  EXPECT_EQ(r.tokens, g.greedy);
}

}  // namespace
