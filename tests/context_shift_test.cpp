// Context shift (Session::shift, GenerateOptions::context_shift): the keys kept in the cache,
// turned to their new positions, give the logits a fresh evaluation of the kept tokens gives, for
// both RoPE modes and every KV cache type; generation goes on past the context size.
#include <gtest/gtest.h>

#include <cstdio>

#include "golden_util.h"
#include "model/synth.h"
#include "shift_util.h"
#include "straw/straw.h"

namespace {

using namespace straw::test;
using straw::KvCacheType;

std::unique_ptr<straw::Model> load(const std::string& file, KvCacheType kv, int ctx = 0) {
  straw::ModelOptions o;
  o.path = (testdata_dir() / "models" / file).string();
  o.threads = 2;
  o.ctx = ctx;
  o.device = straw::DeviceChoice::Cpu;
  o.kv_type_k = o.kv_type_v = kv;
  return straw::Model::load(o);
}

// A one-layer model: its keys and values depend on their token and position only, so a shifted
// cache holds exactly (up to rounding) what a fresh evaluation of the kept tokens writes. (With
// more layers they also carry what the dropped tokens contributed: a shift then differs from a
// fresh evaluation by design, in straw as in llama.cpp.)
std::filesystem::path one_layer_model(straw::model::Arch arch, const std::string& rope_scaling) {
  straw::model::SynthOptions o;
  o.shape = straw::model::custom_shape(arch, 1, 128, 256, 4, 2, 32, 512, false);
  o.shape.rope_base = 10000.0f;  // fast-turning pairs: a wrong angle shows
  if (!rope_scaling.empty()) {
    o.shape.rope_scaling = rope_scaling;
    o.shape.rope_scaling_factor = 4.0f;
    o.shape.rope_scaling_orig_ctx = 64;
  }
  o.type = straw::model::FileType::F16;
  o.seed = 11;
  o.threads = 1;
  const auto path =
      std::filesystem::temp_directory_path() /
      ("straw-shift-" + std::string(straw::model::arch_name(arch)) + rope_scaling + ".gguf");
  straw::model::synthesize(path.string(), o);
  return path;
}

struct KvBound {
  KvCacheType type;
  const char* name;
  double bound;  // max nrmse of the shifted session against the fresh one
};

// Measured 2026-12-05 (max over the models): f32 KV 2.2e-7, f16 2.0e-4, q8_0 6.8e-3, q4_0 7.4e-2
// (the larger ones on qwen3, whose normed keys are larger). A shift turns each key once more and
// rounds it to the cache type again where a fresh evaluation rounds it once, so the quantized
// caches differ by about their rounding. Keys left unturned move the f32 logits by 1.9e-2..4.4e-1;
// YaRN's attention factor applied twice by 3.6e-3 (measured by breaking kv_shift on purpose).
TEST(ContextShift, ShiftedSessionMatchesAFreshEvaluationOfTheKeptTokens) {
  using straw::model::Arch;
  const KvBound kvs[] = {{KvCacheType::F32, "f32", 1e-6},
                         {KvCacheType::F16, "f16", 1e-3},
                         {KvCacheType::Q8_0, "q8_0", 2e-2},
                         {KvCacheType::Q4_0, "q4_0", 0.15}};
  // llama: adjacent-pair RoPE; qwen2 / qwen3: NEOX (qwen3 with q/k norms); qwen2 with YaRN.
  const std::pair<Arch, const char*> models[] = {
      {Arch::Llama, ""}, {Arch::Qwen2, ""}, {Arch::Qwen3, ""}, {Arch::Qwen2, "yarn"}};
  std::vector<int32_t> tokens(100);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 7919 + 13) % 500);
  for (const auto& [arch, scaling] : models) {
    const auto path = one_layer_model(arch, scaling);
    for (const KvBound& kv : kvs) {
      straw::ModelOptions o;
      o.path = path.string();
      o.threads = 2;
      o.ctx = 256;
      o.device = straw::DeviceChoice::Cpu;
      o.kv_type_k = o.kv_type_v = kv.type;
      auto model = straw::Model::load(o);
      // 80 tokens, keep 5, drop 37 (the half of the rest), then 20 more.
      const double d = shift_vs_fresh(*model, tokens, 80, 5, 37, 20);
      std::printf("%-6s %-5s %-5s KV: shifted vs fresh max nrmse %.3e\n",
                  straw::model::arch_name(arch), scaling, kv.name, d);
      EXPECT_LE(d, kv.bound) << straw::model::arch_name(arch) << " " << scaling << " " << kv.name;
    }
    std::filesystem::remove(path);
  }
}

TEST(ContextShift, RecurrentModelsRefuse) {
  STRAW_REQUIRE_TESTDATA();
  if (!std::filesystem::exists(testdata_dir() / "models" / "qwen35-tiny-f16.gguf"))
    GTEST_SKIP() << "qwen35-tiny-f16.gguf is not in the test data";
  auto model = load("qwen35-tiny-f16.gguf", KvCacheType::F16);
  straw::Session s(*model);
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8};
  s.eval(tokens);
  try {
    s.shift(2, 3);
    FAIL() << "a qwen35 session shifted its context";
  } catch (const straw::Error& e) {
    EXPECT_NE(std::string(e.what()).find("recurrent state"), std::string::npos) << e.what();
  }
  EXPECT_EQ(s.n_past(), 8);
  // generate() refuses before evaluating anything.
  straw::GenerateOptions o;
  o.context_shift = true;
  straw::Session t(*model);
  EXPECT_THROW(straw::generate(t, tokens, o, {}), straw::Error);
  EXPECT_EQ(t.n_past(), 0);
}

TEST(ContextShift, GenerationGoesOnPastTheContextSize) {
  STRAW_REQUIRE_TESTDATA();
  const Golden g = load_golden("qwen2-tiny-q4_k_m");
  STRAW_REQUIRE_MODEL(g);
  auto model = load(g.model, KvCacheType::F16, 64);
  const std::span<const int32_t> prompt = std::span(g.tokens).first(20);
  straw::GenerateOptions o;
  o.n_predict = 150;
  o.sampling.temperature = 0.0f;
  o.stop_at_eog = false;
  {
    // Off by default: generation stops when the context is full.
    straw::Session s(*model);
    const straw::GenerateResult r = straw::generate(s, prompt, o, {});
    EXPECT_EQ(r.stop, straw::GenerateResult::Stop::Context);
    EXPECT_EQ(r.context_shifts, 0);
    EXPECT_EQ(s.n_past(), 64);
  }
  o.context_shift = true;
  o.n_keep = 8;
  straw::Session s(*model);
  const straw::GenerateResult r = straw::generate(s, prompt, o, {});
  EXPECT_EQ(r.stop, straw::GenerateResult::Stop::Length);
  EXPECT_EQ(r.tokens.size(), 150u);
  EXPECT_GE(r.context_shifts, 3);
  // The first n_keep tokens stay at the start of the cache.
  ASSERT_GE(s.n_past(), 8);
  EXPECT_TRUE(std::equal(prompt.begin(), prompt.begin() + 8, s.tokens().begin()));
  EXPECT_LE(s.n_past(), 64);
  // A prompt that cannot fit even after shifting: a clear error.
  straw::Session t(*model);
  std::vector<int32_t> longer(g.tokens.begin(), g.tokens.begin() + 70);
  try {
    straw::generate(t, longer, o, {});
    FAIL() << "a 70-token prompt was accepted in a context of 64";
  } catch (const straw::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot make room"), std::string::npos) << e.what();
  }
  // Without context shift the same prompt says how to go on.
  o.context_shift = false;
  try {
    straw::generate(t, longer, o, {});
    FAIL() << "a 70-token prompt was accepted in a context of 64";
  } catch (const straw::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--context-shift"), std::string::npos) << e.what();
  }
}

}  // namespace
