// The placement planner: budgets, forced placements, the cost model's direction.
#include <gtest/gtest.h>

#include <optional>

#include "sched/calibration.h"
#include "sched/plan.h"
#include "straw/error.h"

namespace {

using namespace straw::sched;

// Qwen2.5-32B's shape with IQ4_XS-like tensor sizes (4.25 bits per weight; attn_v and early
// ffn_down at Q5_K's 5.5 bits; output at Q6_K's 6.5625).
ModelShape qwen32b() {
  ModelShape s;
  s.n_layer = 64;
  s.n_embd = 5120;
  s.n_ff = 27648;
  s.n_head = 40;
  s.n_head_kv = 8;
  s.head_dim = 128;
  s.head_dim_v = 128;
  s.n_vocab = 152064;
  s.n_ctx_train = 32768;
  return s;
}

std::vector<TensorDesc> tensors_of(const ModelShape& s) {
  std::vector<TensorDesc> t;
  auto add = [&](std::string name, int64_t ne0, int64_t ne1, double bpw) {
    t.push_back({std::move(name), uint64_t(double(ne0) * double(ne1) * bpw / 8), ne0 * ne1});
  };
  add("token_embd.weight", s.n_embd, s.n_vocab, 4.25);
  add("output_norm.weight", s.n_embd, 1, 32);
  add("output.weight", s.n_embd, s.n_vocab, 6.5625);
  for (int i = 0; i < s.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    const int64_t q = int64_t(s.n_head) * s.head_dim, kv = int64_t(s.n_head_kv) * s.head_dim;
    add(p + "attn_norm.weight", s.n_embd, 1, 32);
    add(p + "attn_q.weight", s.n_embd, q, 4.25);
    add(p + "attn_k.weight", s.n_embd, kv, 4.25);
    add(p + "attn_v.weight", s.n_embd, kv, 5.5);
    add(p + "attn_output.weight", q, s.n_embd, 4.25);
    add(p + "attn_q.bias", q, 1, 32);
    add(p + "attn_k.bias", kv, 1, 32);
    add(p + "attn_v.bias", kv, 1, 32);
    add(p + "ffn_norm.weight", s.n_embd, 1, 32);
    add(p + "ffn_gate.weight", s.n_embd, s.n_ff, 4.25);
    add(p + "ffn_up.weight", s.n_embd, s.n_ff, 4.25);
    add(p + "ffn_down.weight", s.n_ff, s.n_embd, i < 8 ? 5.5 : 4.25);
  }
  return t;
}

constexpr uint64_t kGiB = 1ull << 30;

TEST(Planner, CpuOnlyWithZeroBudget) {
  ModelShape s = qwen32b();
  PlanOptions o;
  o.vram_budget = 0;
  Plan p = make_plan(s, tensors_of(s), o, Speeds{});
  EXPECT_EQ(p.vram_bytes, 0u);
  EXPECT_EQ(p.gpu_weight_bytes, 0u);
  EXPECT_EQ(p.kv_gpu_bytes, 0u);
  EXPECT_EQ(p.transitions, 0);
  for (const auto& t : p.tensors) EXPECT_EQ(t.device, Device::Cpu) << t.name;
  EXPECT_GT(p.predicted_tg_tps, 0);
}

// A KV cache the GPU cannot hold (quantized) keeps every attention unit on the CPU,
// automatic or with --gpu-layers, while the FFNs still use the budget.
TEST(Planner, CpuAttentionKeepsAttentionAndItsCacheOnTheCpu) {
  ModelShape s = qwen32b();
  for (const std::optional<int> ngl : {std::optional<int>(), std::optional<int>(10)}) {
    PlanOptions o;
    o.vram_budget = 8 * kGiB;
    o.ctx = 32768;
    o.kv_type_k = o.kv_type_v = KvType::Q4_0;
    o.cpu_attention = true;
    o.gpu_layers = ngl;
    const Plan p = make_plan(s, tensors_of(s), o, Speeds{});
    EXPECT_EQ(p.kv_gpu_bytes, 0u);
    EXPECT_EQ(p.kv_cpu_bytes, 64 * kv_layer_bytes(s, 32768, KvType::Q4_0));
    EXPECT_GT(p.gpu_weight_bytes, 0u);
    EXPECT_LE(p.vram_bytes, o.vram_budget);
    for (const auto& l : p.layers) EXPECT_EQ(l.attn, Device::Cpu) << l.index;
    for (const auto& t : p.tensors) {
      if (t.name.find(".attn_") != std::string::npos) {
        EXPECT_EQ(t.device, Device::Cpu) << t.name;
      }
    }
  }
}

TEST(Planner, Qwen32BInEightGiBUsesMostOfTheBudgetAndNeverMore) {
  ModelShape s = qwen32b();
  for (KvType kv : {KvType::F16, KvType::Q8_0, KvType::Q4_0}) {
    for (int ub : {512, 128}) {
      PlanOptions o;
      o.vram_budget = 8 * kGiB;
      o.ctx = 8192;
      o.kv_type_k = o.kv_type_v = kv;
      o.ubatch = ub;
      Plan p = make_plan(s, tensors_of(s), o, Speeds{});
      EXPECT_LE(p.vram_bytes, o.vram_budget);
      EXPECT_GE(double(p.vram_bytes), 0.85 * double(o.vram_budget))
          << "kv " << kv_type_name(kv) << " ubatch " << ub;
      EXPECT_EQ(p.vram_bytes, p.gpu_weight_bytes + p.kv_gpu_bytes + p.compute_gpu_bytes);
      // Token embeddings never go to the GPU.
      for (const auto& t : p.tensors) {
        if (t.name == "token_embd.weight") {
          EXPECT_EQ(t.device, Device::Cpu);
        }
      }
    }
  }
}

TEST(Planner, MoreBudgetNeverPredictsSlowerDecode) {
  ModelShape s = qwen32b();
  double prev = 0;
  for (uint64_t gib : {0, 2, 4, 8, 12, 16, 24}) {
    PlanOptions o;
    o.vram_budget = gib * kGiB;
    o.ctx = 8192;
    Plan p = make_plan(s, tensors_of(s), o, Speeds{});
    EXPECT_LE(p.vram_bytes, o.vram_budget);
    EXPECT_GE(p.predicted_tg_tps, prev * 0.999) << gib << " GiB";
    prev = p.predicted_tg_tps;
  }
}

TEST(Planner, EverythingFitsOnABigGpu) {
  ModelShape s = qwen32b();
  PlanOptions o;
  o.vram_budget = 80 * kGiB;
  o.ctx = 8192;
  Plan p = make_plan(s, tensors_of(s), o, Speeds{});
  for (const auto& l : p.layers) {
    EXPECT_EQ(l.attn, Device::Gpu);
    EXPECT_EQ(l.ffn, Device::Gpu);
  }
  EXPECT_EQ(p.output, Device::Gpu);
  EXPECT_EQ(p.kv_cpu_bytes, 0u);
  EXPECT_EQ(p.transitions, 2);  // embeddings -> GPU, logits -> host
}

TEST(Planner, GpuLayersFollowsLlamaCppMeaning) {
  ModelShape s = qwen32b();
  PlanOptions o;
  o.vram_budget = 80 * kGiB;
  o.ctx = 4096;
  o.gpu_layers = 10;
  Plan p = make_plan(s, tensors_of(s), o, Speeds{});
  for (const auto& l : p.layers) {
    const Device want = l.index >= 54 ? Device::Gpu : Device::Cpu;
    EXPECT_EQ(l.attn, want) << l.index;
    EXPECT_EQ(l.ffn, want) << l.index;
  }
  EXPECT_EQ(p.output, Device::Cpu);  // only with N > n_layer
  o.gpu_layers = 65;
  p = make_plan(s, tensors_of(s), o, Speeds{});
  EXPECT_EQ(p.output, Device::Gpu);
}

TEST(Planner, ForcedPlacementOverBudgetSaysHowMuchIsMissing) {
  ModelShape s = qwen32b();
  PlanOptions o;
  o.vram_budget = 8 * kGiB;
  o.gpu_layers = 64;
  try {
    make_plan(s, tensors_of(s), o, Speeds{});
    FAIL() << "expected an error";
  } catch (const straw::Error& e) {
    EXPECT_NE(std::string(e.what()).find("more than the budget"), std::string::npos) << e.what();
  }
}

TEST(Planner, OverridesWinFirstMatch) {
  ModelShape s = qwen32b();
  PlanOptions o;
  o.vram_budget = 80 * kGiB;
  o.ctx = 4096;
  o.overrides = {{"ffn_(up|gate|down)", Device::Cpu}, {".*", Device::Gpu}};
  Plan p = make_plan(s, tensors_of(s), o, Speeds{});
  for (const auto& t : p.tensors) {
    const bool ffn = t.name.find("ffn_up") != std::string::npos ||
                     t.name.find("ffn_gate") != std::string::npos ||
                     t.name.find("ffn_down") != std::string::npos;
    EXPECT_EQ(t.device, ffn ? Device::Cpu : Device::Gpu) << t.name;
  }
  for (const auto& l : p.layers) {
    EXPECT_EQ(l.attn, Device::Gpu);
    EXPECT_EQ(l.ffn, Device::Cpu);
  }
}

TEST(Planner, BudgetBelowComputeBuffersIsAClearError) {
  ModelShape s = qwen32b();
  PlanOptions o;
  o.vram_budget = 16 * 1024 * 1024;
  EXPECT_THROW(make_plan(s, tensors_of(s), o, Speeds{}), straw::Error);
}

TEST(Planner, KvCacheSizes) {
  ModelShape s = qwen32b();
  // 8 KV heads x (128 + 128) x 2 bytes x 8192 positions = 32 MiB per layer in F16.
  EXPECT_EQ(kv_layer_bytes(s, 8192, KvType::F16), 32ull * 1024 * 1024);
  EXPECT_EQ(kv_layer_bytes(s, 8192, KvType::Q8_0), 17ull * 1024 * 1024);
  EXPECT_EQ(kv_layer_bytes(s, 8192, KvType::Q4_0), 9ull * 1024 * 1024);
}

}  // namespace

// The acceptance check of the hybrid issue, end to end through the CLI contract: `straw plan -o
// json` on a Qwen2.5-32B-shaped IQ4_XS file written by `straw synth --no-data` (a sparse file: real
// header, no data) with an 8 GiB budget and an 8K context.
#include <cstdio>
#include <filesystem>
#include <regex>

#include "cli_util.h"
#include "model/presets.h"
#include "model/synth.h"
#include "test_util.h"

namespace {

uint64_t json_u64(const std::string& json, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(json, m, std::regex("\"" + key + "\": ([0-9]+)"))) return 0;
  return std::stoull(m[1]);
}

TEST(PlanCli, Qwen32BIq4xsInEightGiBAtEightK) {
  STRAW_REQUIRE_CLI();
  const auto* preset = straw::model::find_preset("qwen2.5-32b");
  ASSERT_NE(preset, nullptr);
  straw::model::SynthOptions o;
  o.shape = *preset;
  o.type = straw::model::FileType::IQ4_XS;
  o.no_data = true;
  const std::string path = straw::test::temp_path("qwen32b-iq4xs-nodata.gguf").string();
  straw::model::synthesize(path, o);

  const straw::test::CliResult r =
      straw::test::run_straw("plan -m " + path + " --vram-budget 8GiB --ctx 8192 -o json");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string& json = r.out;
  std::filesystem::remove(path);

  const uint64_t budget = json_u64(json, "vram_budget"), used = json_u64(json, "vram_bytes");
  EXPECT_EQ(budget, 8ull << 30);
  EXPECT_LE(used, budget);
  EXPECT_GE(double(used), 0.85 * double(budget));
  EXPECT_EQ(used, json_u64(json, "gpu_weight_bytes") + json_u64(json, "kv_gpu_bytes") +
                      json_u64(json, "compute_gpu_bytes"));
  for (const char* key :
       {"\"ram_bytes\"", "\"cpu_weight_bytes\"", "\"kv_cpu_bytes\"", "\"tensors\": [{\"name\"",
        "\"layers\": [{\"index\"", "\"predicted\": {\"tg_tps\""})
    EXPECT_NE(json.find(key), std::string::npos) << key;
}

}  // namespace

// straw calibrate's CPU prompt speed: a real, finite measurement, whatever the kernel level.
TEST(Calibration, CpuGemmFlopsIsMeasured) {
  const double flops = straw::sched::measure_cpu_gemm_flops(2);
  EXPECT_GT(flops, 1e8);   // slower than 0.1 GFLOP/s would be a broken measurement
  EXPECT_LT(flops, 1e15);  // faster than 1 PFLOP/s as well
}
