// The placement planner on mixture-of-experts models: experts placed last, --cpu-moe,
// --n-cpu-moe N, the active experts' bytes in the decode cost, and MoE FFNs kept on the CPU while
// the GPU may not run MoE ops (PlanOptions::gpu_moe).
#include <gtest/gtest.h>

#include <climits>

#include "sched/plan.h"
#include "straw/error.h"

namespace {

using namespace straw::sched;

constexpr uint64_t kGiB = 1ull << 30;

// Qwen3-30B-A3B's shape (48 layers, 128 experts of 768 rows, 8 used) with IQ4_XS-like sizes.
ModelShape qwen3_30b_a3b() {
  ModelShape s;
  s.n_layer = 48;
  s.n_embd = 2048;
  s.n_ff = 6144;
  s.n_head = 32;
  s.n_head_kv = 4;
  s.head_dim = 128;
  s.head_dim_v = 128;
  s.n_vocab = 151936;
  s.n_ctx_train = 40960;
  s.n_expert = 128;
  s.n_expert_used = 8;
  s.n_ff_exp = 768;
  return s;
}

std::vector<TensorDesc> moe_tensors(const ModelShape& s) {
  std::vector<TensorDesc> t;
  auto add = [&](std::string name, int64_t ne0, int64_t ne1, int64_t ne2, double bpw) {
    const int64_t n = ne0 * ne1 * ne2;
    t.push_back({std::move(name), uint64_t(double(n) * bpw / 8), n});
  };
  add("token_embd.weight", s.n_embd, s.n_vocab, 1, 4.25);
  add("output_norm.weight", s.n_embd, 1, 1, 32);
  add("output.weight", s.n_embd, s.n_vocab, 1, 6.5625);
  for (int i = 0; i < s.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    const int64_t q = int64_t(s.n_head) * s.head_dim, kv = int64_t(s.n_head_kv) * s.head_dim;
    add(p + "attn_norm.weight", s.n_embd, 1, 1, 32);
    add(p + "attn_q.weight", s.n_embd, q, 1, 4.25);
    add(p + "attn_k.weight", s.n_embd, kv, 1, 4.25);
    add(p + "attn_v.weight", s.n_embd, kv, 1, 5.5);
    add(p + "attn_output.weight", q, s.n_embd, 1, 4.25);
    add(p + "attn_q_norm.weight", s.head_dim, 1, 1, 32);
    add(p + "attn_k_norm.weight", s.head_dim, 1, 1, 32);
    add(p + "ffn_norm.weight", s.n_embd, 1, 1, 32);
    add(p + "ffn_gate_inp.weight", s.n_embd, s.n_expert, 1, 32);
    add(p + "ffn_gate_exps.weight", s.n_embd, s.n_ff_exp, s.n_expert, 4.25);
    add(p + "ffn_up_exps.weight", s.n_embd, s.n_ff_exp, s.n_expert, 4.25);
    add(p + "ffn_down_exps.weight", s.n_ff_exp, s.n_embd, s.n_expert, 4.25);
  }
  return t;
}

uint64_t expert_bytes(const std::vector<TensorDesc>& t) {
  uint64_t b = 0;
  for (const TensorDesc& d : t)
    if (unit_of(d.name).part == Part::Experts) b += d.bytes;
  return b;
}

Device device_of(const Plan& p, const std::string& name) {
  for (const TensorPlacement& t : p.tensors)
    if (t.name == name) return t.device;
  ADD_FAILURE() << name << " is not in the plan";
  return Device::Cpu;
}

TEST(MoePlanner, ExpertTensorsAreTheirOwnUnit) {
  EXPECT_EQ(unit_of("blk.3.ffn_up_exps.weight").part, Part::Experts);
  EXPECT_EQ(unit_of("blk.3.ffn_gate_exps.weight").part, Part::Experts);
  EXPECT_EQ(unit_of("blk.3.ffn_down_exps.weight").part, Part::Experts);
  EXPECT_EQ(unit_of("blk.3.ffn_down_exps.weight").layer, 3);
  EXPECT_EQ(unit_of("blk.3.ffn_gate_inp.weight").part, Part::Ffn);
  EXPECT_EQ(unit_of("blk.3.ffn_up_shexp.weight").part, Part::Ffn);
  EXPECT_EQ(unit_of("blk.3.ffn_gate_inp_shexp.weight").part, Part::Ffn);
  EXPECT_EQ(unit_of("blk.3.ffn_up.weight").part, Part::Ffn);
}

TEST(MoePlanner, DecodeReadsOnlyTheActiveExperts) {
  const ModelShape s = qwen3_30b_a3b();
  const auto t = moe_tensors(s);
  PlanOptions o;
  o.ctx = 4096;
  const Plan p = make_plan(s, t, o, Speeds{});
  uint64_t all = 0;
  for (const TensorDesc& d : t)
    if (d.name != "token_embd.weight") all += d.bytes;
  const uint64_t exps = expert_bytes(t);
  EXPECT_EQ(p.expert_cpu_bytes, exps);
  EXPECT_EQ(p.expert_gpu_bytes, 0u);
  EXPECT_EQ(p.n_expert, 128);
  EXPECT_EQ(p.n_expert_used, 8);
  uint64_t kv = 0;
  for (const auto& l : p.layers) kv += l.kv_bytes / 2;
  // Everything but the experts, 8/128 of the experts, the KV cache at half the context.
  const double expect = double(all - exps) + double(exps) * 8 / 128 + double(kv);
  EXPECT_NEAR(double(p.read_bytes_per_token), expect, 1e-6 * expect);
  // Predicted tg is that many bytes at the CPU's read speed.
  EXPECT_NEAR(p.predicted_tg_tps, Speeds{}.cpu_read_bw / expect, 0.01 * p.predicted_tg_tps);
  // Verifying several tokens touches more experts: 1+7 tokens read more than one, less than 8x.
  const double t1 = step_seconds(p, 1), t8 = step_seconds(p, 8);
  EXPECT_GT(t8, 1.5 * t1);
  EXPECT_LT(t8, 8 * t1);
}

TEST(MoePlanner, WithoutGpuMoeOpsTheMoeFfnStaysOnTheCpuAndThePlanSaysSo) {
  const ModelShape s = qwen3_30b_a3b();
  const auto t = moe_tensors(s);
  PlanOptions o;
  o.vram_budget = 8 * kGiB;
  o.ctx = 32768;
  const Plan p = make_plan(s, t, o, Speeds{});
  EXPECT_LE(p.vram_bytes, o.vram_budget);
  for (const auto& l : p.layers) {
    EXPECT_EQ(l.attn, Device::Gpu) << l.index;
    EXPECT_EQ(l.ffn, Device::Cpu) << l.index;
    EXPECT_EQ(l.experts, Device::Cpu) << l.index;
    EXPECT_GT(l.expert_bytes, 0u);
  }
  EXPECT_EQ(p.output, Device::Gpu);
  EXPECT_EQ(device_of(p, "blk.0.ffn_gate_inp.weight"), Device::Cpu);
  EXPECT_EQ(p.expert_gpu_bytes, 0u);
  ASSERT_EQ(p.notes.size(), 1u);
  EXPECT_NE(p.notes[0].find("MoE ops are not verified"), std::string::npos) << p.notes[0];

  // Forced GPU placements do not move them either, and the note says the flags were not applied.
  PlanOptions f = o;
  f.gpu_layers = 1 << 30;
  f.overrides.push_back({"exps", Device::Gpu});
  const Plan q = make_plan(s, t, f, Speeds{});
  EXPECT_EQ(q.expert_gpu_bytes, 0u);
  for (const auto& l : q.layers) EXPECT_EQ(l.ffn, Device::Cpu);
  ASSERT_EQ(q.notes.size(), 1u);
  EXPECT_NE(q.notes[0].find("not applied"), std::string::npos) << q.notes[0];

  // CPU only: nothing to say.
  PlanOptions c;
  EXPECT_TRUE(make_plan(s, t, c, Speeds{}).notes.empty());
}

TEST(MoePlanner, ExpertsArePlacedLast) {
  const ModelShape s = qwen3_30b_a3b();
  const auto t = moe_tensors(s);
  PlanOptions o;
  o.gpu_moe = true;
  o.ctx = 8192;
  // A budget that holds everything but the experts and about a third of them.
  o.vram_budget = 8 * kGiB;
  const Plan p = make_plan(s, t, o, Speeds{});
  EXPECT_LE(p.vram_bytes, o.vram_budget);
  EXPECT_TRUE(p.notes.empty());
  EXPECT_EQ(p.output, Device::Gpu);
  int gpu_experts = 0;
  for (const auto& l : p.layers) {
    EXPECT_EQ(l.attn, Device::Gpu) << l.index;
    EXPECT_EQ(l.ffn, Device::Gpu) << l.index;  // norm and router
    gpu_experts += l.experts == Device::Gpu;
  }
  EXPECT_GT(gpu_experts, 0);
  EXPECT_LT(gpu_experts, s.n_layer);
  EXPECT_GT(p.expert_gpu_bytes, 0u);
  EXPECT_GT(p.expert_cpu_bytes, 0u);
  // The experts that did not fit are the first layers' (ties go to later layers, as --n-cpu-moe).
  for (int i = 1; i < s.n_layer; ++i) {
    if (p.layers[size_t(i - 1)].experts == Device::Gpu) {
      EXPECT_EQ(p.layers[size_t(i)].experts, Device::Gpu) << i;
    }
  }

  // A smaller budget: fewer experts, everything else still on the GPU.
  o.vram_budget = 3 * kGiB;
  const Plan small = make_plan(s, t, o, Speeds{});
  EXPECT_LT(small.expert_gpu_bytes, p.expert_gpu_bytes);
  for (const auto& l : small.layers) {
    EXPECT_EQ(l.attn, Device::Gpu);
    EXPECT_EQ(l.ffn, Device::Gpu);
  }

  // A budget for the whole model: all of it.
  o.vram_budget = 24 * kGiB;
  const Plan big = make_plan(s, t, o, Speeds{});
  EXPECT_EQ(big.expert_cpu_bytes, 0u);
  EXPECT_EQ(big.cpu_weight_bytes, t[0].bytes);  // token_embd
  EXPECT_GT(big.predicted_tg_tps, p.predicted_tg_tps);
}

TEST(MoePlanner, CpuMoeKeepsEveryExpertOnTheCpu) {
  const ModelShape s = qwen3_30b_a3b();
  const auto t = moe_tensors(s);
  PlanOptions o;
  o.gpu_moe = true;
  o.vram_budget = 24 * kGiB;
  o.n_cpu_moe = INT_MAX;
  const Plan p = make_plan(s, t, o, Speeds{});
  EXPECT_EQ(p.expert_gpu_bytes, 0u);
  EXPECT_EQ(p.expert_cpu_bytes, expert_bytes(t));
  for (const auto& l : p.layers) {
    EXPECT_EQ(l.experts, Device::Cpu);
    EXPECT_EQ(l.attn, Device::Gpu);
    EXPECT_EQ(l.ffn, Device::Gpu);
  }
  // -ngl all too: the experts stay.
  o.gpu_layers = 1 << 30;
  const Plan q = make_plan(s, t, o, Speeds{});
  EXPECT_EQ(q.expert_gpu_bytes, 0u);
  EXPECT_EQ(q.layers[5].attn, Device::Gpu);
  // An override naming expert tensors still wins (as llama.cpp's -ot before --cpu-moe).
  o.gpu_layers.reset();
  o.overrides.push_back({"blk\\.47\\.ffn_.*_exps", Device::Gpu});
  const Plan r = make_plan(s, t, o, Speeds{});
  EXPECT_EQ(r.layers[47].experts, Device::Gpu);
  EXPECT_EQ(r.layers[46].experts, Device::Cpu);
}

TEST(MoePlanner, NCpuMoeKeepsTheFirstLayersExpertsOnTheCpu) {
  const ModelShape s = qwen3_30b_a3b();
  const auto t = moe_tensors(s);
  PlanOptions o;
  o.gpu_moe = true;
  o.vram_budget = 24 * kGiB;
  o.n_cpu_moe = 10;
  const Plan p = make_plan(s, t, o, Speeds{});
  for (const auto& l : p.layers)
    EXPECT_EQ(l.experts, l.index < 10 ? Device::Cpu : Device::Gpu) << l.index;
  EXPECT_EQ(device_of(p, "blk.9.ffn_down_exps.weight"), Device::Cpu);
  EXPECT_EQ(device_of(p, "blk.10.ffn_down_exps.weight"), Device::Gpu);
  EXPECT_EQ(device_of(p, "blk.9.ffn_gate_inp.weight"), Device::Gpu);
  // With -ngl: the same split.
  o.gpu_layers = 1 << 30;
  const Plan q = make_plan(s, t, o, Speeds{});
  for (const auto& l : q.layers)
    EXPECT_EQ(l.experts, l.index < 10 ? Device::Cpu : Device::Gpu) << l.index;
  EXPECT_EQ(q.expert_cpu_bytes * 38, q.expert_gpu_bytes * 10);
}

TEST(MoePlanner, DenseModelsAreUnchanged) {
  // A dense model has no experts unit: no expert bytes and no extra CPU <-> GPU transitions.
  ModelShape s = qwen3_30b_a3b();
  s.n_expert = s.n_expert_used = 0;
  s.n_ff_exp = 0;
  std::vector<TensorDesc> t;
  for (const TensorDesc& d : moe_tensors(s))
    if (unit_of(d.name).part != Part::Experts && d.name.find("gate_inp") == std::string::npos)
      t.push_back(d);
  for (int i = 0; i < s.n_layer; ++i)
    t.push_back({"blk." + std::to_string(i) + ".ffn_up.weight", 1000, 1000});
  PlanOptions o;
  o.vram_budget = 8 * kGiB;
  o.gpu_layers = 1 << 30;
  const Plan p = make_plan(s, t, o, Speeds{});
  EXPECT_EQ(p.transitions, 2);  // in after the embedding, out for the logits
  EXPECT_EQ(p.expert_gpu_bytes + p.expert_cpu_bytes, 0u);
  EXPECT_TRUE(p.notes.empty());
  EXPECT_EQ(p.units.size(), size_t(2 * s.n_layer + 1));
  for (const auto& l : p.layers) EXPECT_EQ(l.experts, l.ffn);
}

}  // namespace
