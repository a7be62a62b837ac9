#include "sched/plan.h"

#include <algorithm>
#include <cmath>
#include <regex>

#include "util/str.h"

namespace straw::sched {

const char* device_name(Device d) {
  return d == Device::Gpu ? "gpu" : "cpu";
}

double kv_bytes_per_element(KvType t) {
  switch (t) {
    case KvType::F16:
      return 2.0;
    case KvType::Q8_0:
      return 34.0 / 32.0;
    case KvType::Q4_0:
      return 18.0 / 32.0;
    case KvType::F32:
      return 4.0;
  }
  return 2.0;
}

uint64_t kv_layer_bytes(const ModelShape& s, int64_t ctx, KvType k, KvType v) {
  return uint64_t(ctx) * (kv_row_bytes(k, int64_t(s.n_head_kv) * s.head_dim) +
                          kv_row_bytes(v, int64_t(s.n_head_kv) * s.head_dim_v));
}

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

// Float activations of one micro-batch: x, xn, proj, q, k, v, attention output, gate, up; with
// linear or gated-attention layers also the fused projection, conv output, output gate and decay
// and update gates; with experts the router logits, the choices and their weights and the experts'
// outputs (model/transformer.h: Activations).
uint64_t activation_bytes(const ModelShape& s, int ubatch) {
  const uint64_t q = uint64_t(s.n_head) * s.head_dim;
  const uint64_t gate = s.attn_output_gate ? q : 0;
  const uint64_t ff = std::max<uint64_t>(uint64_t(s.n_ff), uint64_t(s.n_expert_used) * s.n_ff_exp);
  const uint64_t moe = uint64_t(s.n_expert) + uint64_t(s.n_expert_used) * (2 + s.n_embd);
  const uint64_t per_token =
      3 * s.n_embd + q + uint64_t(s.n_head_kv) * (s.head_dim + s.head_dim_v) +
      std::max<uint64_t>(uint64_t(s.n_head) * s.head_dim_v, uint64_t(s.ssm_inner)) + 2 * ff + moe +
      std::max<uint64_t>(2 * gate, uint64_t(s.ssm_conv_dim)) + uint64_t(s.ssm_conv_dim) +
      std::max<uint64_t>(gate, uint64_t(s.ssm_inner)) + 2 * uint64_t(s.ssm_v_heads);
  return uint64_t(ubatch) * per_token * sizeof(float);
}

uint64_t logits_chunk_bytes(const ModelShape& s, int ubatch) {
  return uint64_t(std::min(ubatch, 64)) * s.n_vocab * sizeof(float);
}

}  // namespace

uint64_t gpu_compute_bytes(const ModelShape& s, int ubatch) {
  const uint64_t widest = uint64_t(std::max(s.n_embd, s.n_ff));
  uint64_t b = activation_bytes(s, ubatch) + logits_chunk_bytes(s, ubatch);
  b += uint64_t(ubatch) * widest * 36 / 32;  // activations quantized to Q8_1 for matvec
  b += uint64_t(ubatch) * widest * 2;        // activations in FP16 for cuBLAS GEMM
  b += 64 * kMiB;                            // FP16 dequantization tile for GEMM
  b += 32 * kMiB;                            // cuBLAS workspace
  b += uint64_t(8) * s.n_head * 64 * (s.head_dim_v + 2) * sizeof(float);  // flash-decoding partials
  // The expert matmul's workspace (cuda/moe.cu): the slots grouped by expert, and their gathered
  // activations (float rows at most: F16 / BF16 experts).
  const uint64_t slots = uint64_t(ubatch) * uint64_t(s.n_expert_used);
  if (s.n_expert > 0)
    b += slots * uint64_t(std::max(s.n_embd, s.n_ff_exp)) * sizeof(float) +
         (3 * slots + 2) * sizeof(int32_t);
  // The CUDA context and cuBLAS handle take device memory outside straw's allocations, and the
  // budget stands for the whole card: a process planned at 8175 MiB peaked at 8565 MiB in
  // nvidia-smi (H200, CUDA 13.0, driver 580), so 400 MiB.
  b += kCudaContextBytes;
  return b;
}

uint64_t cpu_compute_bytes(const ModelShape& s, int ubatch) {
  const uint64_t widest = uint64_t(std::max(s.n_embd, s.n_ff));
  return activation_bytes(s, ubatch) + logits_chunk_bytes(s, ubatch) +
         uint64_t(ubatch) * widest * 292 / 256;  // activations quantized to Q8_K
}

UnitOf unit_of(const std::string& n) {
  UnitOf u;
  if (n.rfind("token_embd.", 0) == 0) {
    u.part = Part::Embedding;
  } else if (n.rfind("output.", 0) == 0 || n.rfind("output_norm.", 0) == 0) {
    u.part = Part::Output;
  } else if (n.rfind("blk.", 0) == 0) {
    const size_t dot = n.find('.', 4);
    if (dot == std::string::npos) return u;
    u.layer = std::atoi(n.substr(4, dot - 4).c_str());
    const std::string rest = n.substr(dot + 1);
    if (rest.rfind("attn_", 0) == 0 || rest.rfind("ssm_", 0) == 0)
      u.part = Part::Attn;
    else if (rest.rfind("ffn_", 0) == 0 && rest.find("_exps.") != std::string::npos)
      u.part = Part::Experts;
    else if (rest.rfind("ffn_", 0) == 0 || rest.rfind("post_attention_norm", 0) == 0)
      u.part = Part::Ffn;
  }
  return u;
}

namespace {

// Why a unit must stay on the CPU.
enum class Pin {
  None,
  CpuMoe,    // --n-cpu-moe / --cpu-moe: an override naming its tensors still wins
  NoGpuMoe,  // an MoE FFN and the GPU may not run MoE ops (gpu_moe): nothing moves it
};

// A unit of automatic placement and what it costs and reads.
struct Unit {
  int layer;  // -1 for the output layer
  Part part;
  Pin pin = Pin::None;
  double expert_fraction = 0;  // experts unit: the share of its weights a token reads
  uint64_t weight_bytes = 0;
  uint64_t kv_bytes = 0;       // VRAM its KV cache takes (attention units)
  uint64_t state_bytes = 0;    // its recurrent state (linear-attention units)
  uint64_t read_bytes = 0;     // bytes read per decoded token
  double flops_per_token = 0;  // prefill FLOPs per prompt token (weights, recurrence)
  bool recurrent = false;      // a linear-attention unit: no attention over the context
  bool cpu_only = false;       // the GPU cannot run it (PlanOptions::cpu_attention)
  Device device = Device::Cpu;
  uint64_t vram() const { return weight_bytes + kv_bytes + state_bytes; }
  bool empty() const { return vram() == 0 && read_bytes == 0; }  // a dense layer's experts
};

// Execution order: attn0, ffn0, experts0, attn1, ..., output.
constexpr int kUnitsPerLayer = 3;
int unit_index(int layer, Part part) {
  return kUnitsPerLayer * layer + (part == Part::Ffn ? 1 : part == Part::Experts ? 2 : 0);
}
bool in_layer_unit(const UnitOf& u, int n_layer) {
  return (u.part == Part::Attn || u.part == Part::Ffn || u.part == Part::Experts) && u.layer >= 0 &&
         u.layer < n_layer;
}

struct Model {
  std::vector<Unit> units;
  int n_layer;
};

Model build_units(const ModelShape& s, const std::vector<TensorDesc>& tensors,
                  const PlanOptions& o) {
  Model m;
  m.n_layer = s.n_layer;
  m.units.resize(size_t(kUnitsPerLayer * s.n_layer + 1));
  for (int i = 0; i < s.n_layer; ++i) {
    for (Part part : {Part::Attn, Part::Ffn, Part::Experts})
      m.units[unit_index(i, part)] = {i, part};
    m.units[unit_index(i, Part::Attn)].cpu_only = o.cpu_attention;
  }
  m.units.back() = {-1, Part::Output};
  // A decoded token reads n_expert_used of the n_expert experts: that share of the experts' bytes
  // and FLOPs (on average over tokens; the router picks which).
  const double active =
      s.n_expert > 0 ? double(std::clamp(s.n_expert_used, 1, s.n_expert)) / s.n_expert : 1.0;
  for (const TensorDesc& t : tensors) {
    UnitOf u = unit_of(t.name);
    Unit* unit = nullptr;
    if (u.part == Part::Output)
      unit = &m.units.back();
    else if (in_layer_unit(u, s.n_layer))
      unit = &m.units[unit_index(u.layer, u.part)];
    if (!unit) continue;
    const double share = u.part == Part::Experts ? active : 1.0;
    if (u.part == Part::Experts) unit->expert_fraction = active;
    unit->weight_bytes += t.bytes;
    unit->read_bytes += static_cast<uint64_t>(std::llround(double(t.bytes) * share));
    unit->flops_per_token += 2.0 * double(t.n_elements) * share;
  }
  for (int i = 0; i < s.n_layer; ++i) {
    Unit& ffn = m.units[unit_index(i, Part::Ffn)];
    Unit& experts = m.units[unit_index(i, Part::Experts)];
    if (experts.empty()) continue;
    if (!o.gpu_moe)
      ffn.pin = experts.pin = Pin::NoGpuMoe;
    else if (i < o.n_cpu_moe)
      experts.pin = Pin::CpuMoe;
  }
  // Tied embeddings: the LM head reads token_embd in full every token, so the output unit holds
  // a copy of it.
  bool has_output = std::any_of(tensors.begin(), tensors.end(),
                                [](const TensorDesc& t) { return t.name == "output.weight"; });
  if (!has_output) {
    for (const TensorDesc& t : tensors)
      if (t.name == "token_embd.weight") {
        m.units.back().weight_bytes += t.bytes;
        m.units.back().read_bytes += t.bytes;
        m.units.back().flops_per_token += 2.0 * double(t.n_elements);
      }
  }
  const uint64_t kv = kv_layer_bytes(s, o.ctx, o.kv_type_k, o.kv_type_v);
  for (int i = 0; i < s.n_layer; ++i) {
    Unit& u = m.units[unit_index(i, Part::Attn)];
    if (s.is_recurrent(i)) {
      // The state is read and written once per decoded token, whatever the context (its
      // snapshot, half of recurrent_state_bytes, is not touched while decoding).
      u.recurrent = true;
      u.state_bytes = s.recurrent_state_bytes;
      u.read_bytes += s.recurrent_state_bytes;
      u.flops_per_token += s.recurrent_flops_per_token;
    } else {
      u.kv_bytes = kv;
      u.read_bytes += kv / 2;  // decode reads the cache up to the current position
    }
  }
  return m;
}

int count_transitions(const std::vector<Unit>& units) {
  int n = 0;
  Device prev = Device::Cpu;  // the embedding lookup runs on the CPU
  for (const Unit& u : units) {
    if (u.empty()) continue;
    if (u.device != prev) ++n;
    prev = u.device;
  }
  if (prev != Device::Cpu) ++n;  // logits come back to the host
  return n;
}

double decode_seconds(const std::vector<Unit>& units, const Speeds& sp) {
  double t = 0;
  for (const Unit& u : units)
    t += double(u.read_bytes) / (u.device == Device::Gpu ? sp.gpu_read_bw : sp.cpu_read_bw);
  return t + count_transitions(units) * sp.transition_s;
}

// Seconds to process one micro-batch of T prompt tokens (from an empty cache). CPU-resident
// units run on the CPU, or are streamed to the GPU when `stream` is set.
double prefill_seconds(const std::vector<Unit>& units, const ModelShape& s, int T, bool stream,
                       const Speeds& sp) {
  double t = 0;
  // Attention scores and values: 4 * T^2/2 * head_dim * n_head FLOPs per layer (causal).
  const double attn_flops =
      2.0 * double(T) * double(T) * s.n_head * (s.head_dim + s.head_dim_v) / 2;
  for (const Unit& u : units) {
    const double f =
        u.flops_per_token * T + (u.part == Part::Attn && !u.recurrent ? attn_flops : 0.0);
    if (u.device == Device::Gpu) {
      t += std::max(f / sp.gpu_flops, double(u.weight_bytes) / sp.gpu_read_bw);
    } else {
      // On the CPU, or streamed to the GPU where that is faster (the copy of unit i+1 overlaps
      // the compute of unit i: the slower of the two counts).
      const double on_cpu = f / sp.cpu_flops;
      const double streamed = std::max(double(u.weight_bytes) / sp.h2d_bw, f / sp.gpu_flops);
      t += stream ? std::min(on_cpu, streamed) : on_cpu;
    }
  }
  return t + count_transitions(units) * sp.transition_s;
}

// The last n layers on the GPU (and the output layer when n > n_layer), as llama.cpp's -ngl;
// their experts too when `experts` is set. Pinned units stay on the CPU.
void apply_gpu_layers(Model& m, int n, bool experts) {
  const int first = std::max(0, m.n_layer - n);
  for (int i = first; i < m.n_layer; ++i)
    for (Part part : {Part::Attn, Part::Ffn, Part::Experts}) {
      Unit& u = m.units[unit_index(i, part)];
      if (u.pin == Pin::None && !u.cpu_only && (experts || part != Part::Experts))
        u.device = Device::Gpu;
    }
  if (n > m.n_layer) m.units.back().device = Device::Gpu;
}

// Greedy placement: repeatedly move to the GPU the unit that saves the most decode time per byte
// of VRAM (transitions included), while it fits. Ties go to later layers, as -ngl would. Only the
// experts units when `experts` is set, only the others when not.
void greedy_place(Model& m, uint64_t available, const Speeds& sp, bool experts) {
  uint64_t used = 0;
  for (;;) {
    const double base = decode_seconds(m.units, sp);
    int best = -1;
    double best_gain = 0;
    for (int i = int(m.units.size()) - 1; i >= 0; --i) {
      Unit& u = m.units[i];
      if (u.device == Device::Gpu || u.cpu_only || used + u.vram() > available || u.vram() == 0 ||
          u.pin != Pin::None || (u.part == Part::Experts) != experts)
        continue;
      u.device = Device::Gpu;
      const double gain = (base - decode_seconds(m.units, sp)) / double(u.vram());
      u.device = Device::Cpu;
      if (gain > best_gain) {
        best_gain = gain;
        best = i;
      }
    }
    if (best < 0) return;
    m.units[best].device = Device::Gpu;
    used += m.units[best].vram();
  }
}

uint64_t gpu_vram(const Model& m) {
  uint64_t b = 0;
  for (const Unit& u : m.units)
    if (u.device == Device::Gpu) b += u.vram();
  return b;
}

// Tops up a placement: first the units other than experts, then (what VRAM is left) the experts:
// they are large and a token reads few of them, so attention, norms, routers and shared experts
// save more per byte on the GPU.
void top_up(Model& m, uint64_t available, const Speeds& sp) {
  for (bool experts : {false, true}) greedy_place(m, available - gpu_vram(m), sp, experts);
}

// The best of the greedy placement and every whole-layer suffix that fits (what -ngl N gives,
// without the experts): one unit at a time the greedy cannot see that moving many units pays for
// their transitions.
void auto_place(Model& m, uint64_t available, const Speeds& sp) {
  Model best = m;
  top_up(best, available, sp);
  double best_t = decode_seconds(best.units, sp);
  for (int n = 1; n <= m.n_layer + 1; ++n) {
    Model c = m;
    apply_gpu_layers(c, n, false);
    if (gpu_vram(c) > available) break;
    top_up(c, available, sp);  // what the suffix leaves
    const double t = decode_seconds(c.units, sp);
    if (t < best_t) {
      best = c;
      best_t = t;
    }
  }
  m = best;
}

}  // namespace

Plan make_plan(const ModelShape& shape, const std::vector<TensorDesc>& tensors,
               const PlanOptions& o, const Speeds& sp) {
  if (o.ctx <= 0) fail("the context length must be positive, got ", o.ctx);
  if (o.ubatch <= 0) fail("the micro-batch must be positive, got ", o.ubatch);
  std::vector<std::regex> patterns;
  for (const auto& ov : o.overrides) {
    try {
      patterns.emplace_back(ov.pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      fail("--override-tensor: '", ov.pattern, "' is not a valid regular expression (", e.what(),
           ")");
    }
  }

  Model m = build_units(shape, tensors, o);
  const uint64_t compute_gpu = o.vram_budget > 0 ? gpu_compute_bytes(shape, o.ubatch) : 0;
  // Streaming CPU-resident weights during prefill needs two staging buffers (double buffering)
  // of the largest layer tensor on the GPU; the LM head, when streamed, goes in chunks of that
  // size.
  uint64_t largest = 0;
  for (const TensorDesc& t : tensors) {
    const Part part = unit_of(t.name).part;
    if (part == Part::Attn || part == Part::Ffn || part == Part::Experts)
      largest = std::max(largest, t.bytes);
  }
  const uint64_t staging = 2 * largest;

  auto finish = [&](Model mm, bool with_staging) {
    Plan p;
    p.speeds = sp;
    p.vram_budget = o.vram_budget;
    p.n_expert = shape.n_expert;
    p.n_expert_used = shape.n_expert_used;
    // Per-tensor devices: the unit's, then --override-tensor (first match wins), except that an
    // MoE FFN stays on the CPU while the GPU backend cannot run it.
    bool moe_kept = false;    // the flags asked for an MoE FFN on the GPU
    bool any_pinned = false;  // some MoE FFN is on the CPU for want of GPU MoE ops
    for (const TensorDesc& t : tensors) {
      UnitOf u = unit_of(t.name);
      Device d = Device::Cpu;
      Pin pin = Pin::None;
      if (u.part == Part::Output) {
        d = mm.units.back().device;
      } else if (in_layer_unit(u, shape.n_layer)) {
        d = mm.units[unit_index(u.layer, u.part)].device;
        pin = mm.units[unit_index(u.layer, u.part)].pin;
      }
      for (size_t k = 0; k < patterns.size(); ++k)
        if (std::regex_search(t.name, patterns[k])) {
          d = o.overrides[k].device;
          break;
        }
      if (pin == Pin::NoGpuMoe) {
        any_pinned = true;
        moe_kept = moe_kept || d == Device::Gpu;
        d = Device::Cpu;
      }
      p.tensors.push_back({t.name, d, t.bytes});
      (d == Device::Gpu ? p.gpu_weight_bytes : p.cpu_weight_bytes) += t.bytes;
      if (u.part == Part::Experts)
        (d == Device::Gpu ? p.expert_gpu_bytes : p.expert_cpu_bytes) += t.bytes;
    }
    if (any_pinned && (o.vram_budget > 0 || moe_kept))
      p.notes.push_back(
          str("mixture-of-experts FFNs (router, shared expert, experts) stay on the CPU: the GPU "
              "backend's MoE ops are not verified on a GPU yet (STRAW_CUDA_MOE=1 tries them)",
              moe_kept ? " (the GPU placement --gpu-layers / --override-tensor asked for them "
                         "was not applied to them)"
                       : ""));
    // Units follow their defining tensor after overrides: attention goes where attn_q is (its KV
    // cache with it; a linear layer's where attn_qkv is, its state with it), the FFN where
    // ffn_up is (an MoE FFN where its router is), the experts where ffn_up_exps is.
    for (const TensorPlacement& t : p.tensors) {
      UnitOf u = unit_of(t.name);
      if (u.layer < 0 || u.layer >= shape.n_layer) continue;
      auto has = [&](const char* s) { return t.name.find(s) != std::string::npos; };
      if (has(".attn_q.weight") || has(".attn_qkv.weight"))
        mm.units[unit_index(u.layer, Part::Attn)].device = t.device;
      if (has(".ffn_up.weight") || has(".ffn_gate_inp.weight"))
        mm.units[unit_index(u.layer, Part::Ffn)].device = t.device;
      if (has(".ffn_up_exps.weight") || has(".ffn_gate_up_exps.weight"))
        mm.units[unit_index(u.layer, Part::Experts)].device = t.device;
    }
    if (!tensors.empty()) {
      for (const TensorPlacement& t : p.tensors)
        if (t.name == "output.weight") mm.units.back().device = t.device;
    }
    for (int i = 0; i < shape.n_layer; ++i) {
      LayerPlacement l;
      l.index = i;
      const Unit& attn = mm.units[unit_index(i, Part::Attn)];
      const Unit& ffn = mm.units[unit_index(i, Part::Ffn)];
      Unit& experts = mm.units[unit_index(i, Part::Experts)];
      if (experts.empty()) experts.device = ffn.device;  // a dense layer
      l.attn = attn.device;
      l.ffn = ffn.device;
      l.experts = experts.device;
      l.attn_bytes = attn.weight_bytes;
      l.ffn_bytes = ffn.weight_bytes;
      l.expert_bytes = experts.weight_bytes;
      l.kv_bytes = attn.kv_bytes;
      l.state_bytes = attn.state_bytes;
      (l.attn == Device::Gpu ? p.kv_gpu_bytes : p.kv_cpu_bytes) += l.kv_bytes;
      (l.attn == Device::Gpu ? p.state_gpu_bytes : p.state_cpu_bytes) += l.state_bytes;
      p.layers.push_back(l);
    }
    p.state_checkpoint_bytes =
        uint64_t(shape.recurrent_checkpoints) * (p.state_gpu_bytes + p.state_cpu_bytes) / 2;
    p.output = mm.units.back().device;
    const bool any_gpu = p.gpu_weight_bytes > 0 || p.kv_gpu_bytes > 0 || p.state_gpu_bytes > 0;
    const bool any_cpu_weights = p.cpu_weight_bytes > 0;
    p.compute_gpu_bytes = any_gpu || o.vram_budget > 0 ? compute_gpu : 0;
    p.stream_prefill = with_staging && any_cpu_weights;
    if (p.stream_prefill) p.compute_gpu_bytes += staging;
    if (o.vram_budget == 0) p.compute_gpu_bytes = 0;
    p.compute_cpu_bytes = cpu_compute_bytes(shape, o.ubatch);
    p.vram_bytes = p.gpu_weight_bytes + p.kv_gpu_bytes + p.state_gpu_bytes + p.compute_gpu_bytes;
    p.ram_bytes = p.cpu_weight_bytes + p.kv_cpu_bytes + p.state_cpu_bytes +
                  p.state_checkpoint_bytes + p.compute_cpu_bytes;
    p.transitions = count_transitions(mm.units);
    for (const Unit& u : mm.units) {
      if (u.empty()) continue;
      p.units.push_back(
          {u.device, u.read_bytes, u.flops_per_token, u.weight_bytes, u.expert_fraction});
      p.read_bytes_per_token += u.read_bytes;
    }
    p.predicted_tg_tps = 1.0 / decode_seconds(mm.units, sp);
    p.predicted_pp_tps =
        double(o.ubatch) / prefill_seconds(mm.units, shape, o.ubatch, p.stream_prefill, sp);
    return p;
  };

  const bool forced = o.gpu_layers.has_value() || !o.overrides.empty();
  if (o.vram_budget == 0) {
    if (forced && (o.gpu_layers.value_or(0) > 0 ||
                   std::any_of(o.overrides.begin(), o.overrides.end(),
                               [](const auto& ov) { return ov.device == Device::Gpu; })))
      fail("the VRAM budget is 0 (CPU only) but GPU placement was requested; give --vram-budget");
    return finish(m, false);
  }
  if (compute_gpu > o.vram_budget)
    fail("the VRAM budget of ", human_bytes(o.vram_budget), " is smaller than the ",
         human_bytes(compute_gpu), " of GPU compute buffers for --ubatch ", o.ubatch,
         "; give a larger --vram-budget, a smaller --ubatch, or --vram-budget 0 for CPU only");

  if (forced) {
    if (o.gpu_layers) apply_gpu_layers(m, *o.gpu_layers, true);
    Plan p = finish(m, false);
    if (p.vram_bytes > o.vram_budget)
      fail("the requested placement needs ", human_bytes(p.vram_bytes), " of VRAM (weights ",
           human_bytes(p.gpu_weight_bytes), ", KV cache ", human_bytes(p.kv_gpu_bytes),
           p.state_gpu_bytes ? ", recurrent state " + human_bytes(p.state_gpu_bytes) : "",
           ", compute ", human_bytes(p.compute_gpu_bytes), "), ",
           human_bytes(p.vram_bytes - o.vram_budget), " more than the budget of ",
           human_bytes(o.vram_budget),
           "; use fewer --gpu-layers, a smaller --ctx or a quantized --kv-type");
    return p;
  }

  // Automatic: plan without and with prefill streaming (its staging buffers cost VRAM that weights
  // could use) and keep streaming only when it speeds prefill up markedly at a small decode cost.
  Model plain = m;
  auto_place(plain, o.vram_budget - compute_gpu, sp);
  Plan a = finish(plain, false);
  if (!o.stream_prefill || a.cpu_weight_bytes == 0 || compute_gpu + staging > o.vram_budget)
    return a;
  Model streamed = m;
  auto_place(streamed, o.vram_budget - compute_gpu - staging, sp);
  Plan b = finish(streamed, true);
  // Long prompts (code, documents) make prefill matter as much as decode for an assistant: take a
  // decode loss of up to 5% for a prefill at least 1.5x faster.
  const bool pays = b.predicted_pp_tps > 1.5 * a.predicted_pp_tps &&
                    b.predicted_tg_tps > 0.95 * a.predicted_tg_tps;
  return pays ? b : a;
}

double step_seconds(const Plan& plan, int n_tokens) {
  const Speeds& sp = plan.speeds;
  const double n = std::max(1, n_tokens);
  double t = 0;
  for (const UnitCost& u : plan.units) {
    const bool gpu = u.device == Device::Gpu;
    // n tokens routed independently touch 1 - (1 - k/E)^n of the experts.
    const double read = u.expert_fraction > 0
                            ? double(u.weight_bytes) * (1.0 - std::pow(1.0 - u.expert_fraction, n))
                            : double(u.read_bytes);
    t += std::max(read / (gpu ? sp.gpu_read_bw : sp.cpu_read_bw),
                  n * u.flops_per_token / (gpu ? sp.gpu_flops : sp.cpu_flops));
  }
  return t + plan.transitions * sp.transition_s;
}

uint64_t budget_after_draft(const Plan& draft, uint64_t vram_budget) {
  // One process, one CUDA context: both plans count it, so the draft's share leaves it out.
  const uint64_t used =
      draft.vram_bytes > kCudaContextBytes ? draft.vram_bytes - kCudaContextBytes : 0;
  return vram_budget > used ? vram_budget - used : 0;
}

}  // namespace straw::sched
