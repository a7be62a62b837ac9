// The placement planner: which device holds each tensor, what every device's memory holds, and
// how fast the result should run.
//
// Inputs are plain descriptions (no GGUF, no backend): the model's shape and tensor list, the
// options (VRAM budget, context, KV type, micro-batch, forced layers or overrides) and the
// machine's calibrated speeds. The planner accounts every byte it places on the GPU (weights, the
// KV cache of GPU-resident attention, compute buffers) and never exceeds the budget.
//
// Placement units (the granularity of automatic placement):
//  - attention of layer i: attn_norm, q/k/v/o weights, biases, q/k norms, plus its KV cache; for
//    a linear-attention layer (Gated DeltaNet) its projections and ssm_* tensors, plus its
//    recurrent state instead of a KV cache;
//  - FFN of layer i: ffn_norm, gate, up, down; in a mixture-of-experts layer ffn_norm, the router
//    (ffn_gate_inp) and the shared expert (ffn_*_shexp);
//  - experts of layer i (MoE): ffn_{gate,up,down}_exps, large and touched sparsely (a decoded
//    token reads n_expert_used of n_expert experts): placed last, after every other unit;
//  - the output layer: output_norm + output.weight;
//  - token_embd always stays on the CPU (one row is read per token).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ops/kv_type.h"

namespace straw::sched {

enum class Device { Cpu, Gpu };
const char* device_name(Device d);  // "cpu" | "gpu"

// KV cache types and row sizes are the ops' (what the cache allocates is what the plan counts).
using ops::kv_row_bytes;
using ops::kv_type_name;
using ops::KvType;
double kv_bytes_per_element(KvType t);  // F16 2, Q8_0 34/32, Q4_0 18/32, F32 4

// The shape of a decoder model, enough to size KV caches and compute buffers.
struct ModelShape {
  int n_layer = 0;
  int64_t n_embd = 0;
  int64_t n_ff = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;    // of q and k
  int head_dim_v = 0;  // of v
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  // Linear-attention (Gated DeltaNet) layers, qwen35. Their per-sequence memory is a recurrent
  // state of fixed size (F32 conv + delta-rule state), not a KV cache: it does not grow.
  std::vector<uint8_t> recurrent;        // [n_layer] 1: linear layer (empty: none)
  uint64_t recurrent_state_bytes = 0;    // per linear layer and sequence (state + its snapshot)
  int recurrent_checkpoints = 0;         // host copies of the state (without snapshot) it keeps
  double recurrent_flops_per_token = 0;  // per linear layer: conv + delta rule
  int64_t ssm_conv_dim = 0;              // activations of a linear layer: qkv / conv width,
  int64_t ssm_inner = 0;                 //   value width (z, output),
  int ssm_v_heads = 0;                   //   gates per token
  bool attn_output_gate = false;         // attention's q projection also gives a gate (2x rows)
  // Mixture of experts (0 for dense models): experts per layer, experts a token uses, and the
  // rows of one expert's gate/up (activations hold n_expert_used of them per token).
  int n_expert = 0;
  int n_expert_used = 0;
  int64_t n_ff_exp = 0;
  bool is_recurrent(int il) const { return !recurrent.empty() && recurrent[size_t(il)] != 0; }
};

struct TensorDesc {
  std::string name;  // GGUF name: "blk.3.ffn_up.weight", "output.weight", ...
  uint64_t bytes = 0;
  int64_t n_elements = 0;
};

// Measured (or default) speeds of this machine; see calibration.h.
struct Speeds {
  double cpu_read_bw = 40e9;    // bytes/s: multi-threaded streaming read of weights
  double gpu_read_bw = 230e9;   // bytes/s: device memory read (RTX 4060 laptop class)
  double h2d_bw = 12e9;         // bytes/s: pinned host -> device copies
  double transition_s = 30e-6;  // one CPU <-> GPU hand-over of the activations (sync + copy)
  double cpu_flops = 0.4e12;    // FLOP/s of quantized GEMM on the CPU (prefill)
  double gpu_flops = 40e12;     // FLOP/s of GEMM on the GPU (prefill)
  bool calibrated = false;      // false: these defaults
};

struct PlanOptions {
  uint64_t vram_budget = 0;        // bytes the plan may use on the GPU; 0: CPU only
  int64_t ctx = 4096;              // context length (KV cache positions)
  KvType kv_type_k = KvType::F16;  // K cache element type (llama.cpp's -ctk)
  KvType kv_type_v = KvType::F16;  // V cache element type (llama.cpp's -ctv)
  bool cpu_attention = false;      // attention (and its KV cache) stays on the CPU: the GPU cannot
                                   // run it (a quantized or mixed KV cache)
  int ubatch = 512;                // micro-batch for prompt processing
  std::optional<int> gpu_layers;   // llama.cpp's -ngl: the last N repeating layers on the GPU, and
                                   // the output layer too when N > n_layer; unset: automatic
  struct Override {
    std::string pattern;  // ECMAScript regex searched in the tensor name
    Device device;
  };
  std::vector<Override> overrides;  // first match wins; applied after gpu_layers / automatic
  // llama.cpp's --n-cpu-moe N: the experts (ffn_*_exps) of layers 0..N-1 stay on the CPU, whatever
  // gpu_layers or the automatic placement would do (--cpu-moe: N >= n_layer, all of them). An
  // override naming an expert tensor still wins.
  int n_cpu_moe = 0;
  // Whether the GPU backend may run mixture-of-experts FFNs (router, shared expert, experts).
  // false (its MoE ops are not verified on a GPU yet; STRAW_CUDA_MOE=1 sets it): every MoE layer's
  // FFN (ffn_norm, router, shared expert, experts) stays on the CPU whatever the flags, and the
  // plan's notes say so. true: the FFN and its experts are placed apart (experts last).
  bool gpu_moe = false;
  // Whether the plan may stream CPU-resident weights to the GPU for prompt micro-batches (two
  // staging buffers of the largest layer tensor in VRAM; prefill predicted as the slower of the
  // copy and the GPU's compute). false: the runtime does not stream yet (the CPU keeps its weights
  // repacked in its own layout, which the GPU kernels do not read), so a plan that counted on it
  // would reserve VRAM for nothing and predict a prefill that does not happen.
  bool stream_prefill = false;
};

struct TensorPlacement {
  std::string name;
  Device device = Device::Cpu;
  uint64_t bytes = 0;
};

struct LayerPlacement {
  int index = 0;
  Device attn = Device::Cpu;  // where attention (and its KV cache) runs
  Device ffn = Device::Cpu;
  Device experts = Device::Cpu;  // an MoE layer's experts (dense layers: with the FFN)
  uint64_t attn_bytes = 0;       // weights of the attention unit
  uint64_t ffn_bytes = 0;        // the FFN unit without the experts
  uint64_t expert_bytes = 0;     // ffn_*_exps of this layer (0: dense)
  uint64_t kv_bytes = 0;         // KV cache of this layer at the planned context
  uint64_t state_bytes = 0;      // recurrent state of a linear layer (one sequence)
};

// What one placement unit costs a forward step, for predicting steps of several tokens.
struct UnitCost {
  Device device = Device::Cpu;
  uint64_t read_bytes = 0;     // read per decoded token: weights (of an experts unit the active
                               // experts' share), and its KV cache at half the context
  double flops_per_token = 0;  // matmul FLOPs per token
  uint64_t weight_bytes = 0;   // the unit's weights
  double expert_fraction = 0;  // experts unit: n_expert_used / n_expert, the share of its weights
                               // one token reads; 0: a dense unit (it reads all its weights)
};

struct Plan {
  uint64_t vram_budget = 0;
  uint64_t vram_bytes = 0;  // predicted peak: gpu weights + gpu KV and state + compute
  uint64_t ram_bytes = 0;   // cpu weights + cpu KV and state + checkpoints + compute
  uint64_t gpu_weight_bytes = 0;
  uint64_t cpu_weight_bytes = 0;
  uint64_t kv_gpu_bytes = 0;
  uint64_t kv_cpu_bytes = 0;
  uint64_t state_gpu_bytes = 0;         // recurrent state with GPU-resident linear layers
  uint64_t state_cpu_bytes = 0;         // ... with CPU-resident ones
  uint64_t state_checkpoint_bytes = 0;  // the session's state checkpoints (host RAM)
  uint64_t compute_gpu_bytes = 0;
  uint64_t compute_cpu_bytes = 0;
  Device output = Device::Cpu;
  int transitions = 0;  // CPU <-> GPU hand-overs per decoded token
  std::vector<TensorPlacement> tensors;
  std::vector<LayerPlacement> layers;
  double predicted_tg_tps = 0;  // tokens/s decoding at half the context filled
  double predicted_pp_tps = 0;  // tokens/s processing a prompt of one micro-batch
  bool stream_prefill = false;  // prefill streams CPU-resident weights to the GPU
  Speeds speeds;
  std::vector<UnitCost> units;  // execution order: attn0, ffn0, experts0, attn1, ..., output
  // Mixture of experts (all 0 for dense models).
  int n_expert = 0;               // experts per MoE layer
  int n_expert_used = 0;          // experts each token is routed to
  uint64_t expert_gpu_bytes = 0;  // ffn_*_exps weights on the GPU (part of gpu_weight_bytes)
  uint64_t expert_cpu_bytes = 0;  // ... on the CPU (part of cpu_weight_bytes)
  // Bytes one decoded token reads (the prediction of tg): the weights of every unit but the
  // experts, n_expert_used / n_expert of the experts' weights, the KV cache at half the context
  // and the recurrent state.
  uint64_t read_bytes_per_token = 0;
  std::vector<std::string> notes;  // why the plan departs from what the flags asked
};

// Predicted seconds of one forward step over n_tokens tokens at half the context filled (1: a
// decode step; 1 + k: verifying k speculative proposals): each unit reads its weights once for
// all tokens and computes every token, so it takes the longer of reading and computing on its
// device; plus the CPU <-> GPU transitions. Decode is memory-bound: a few more tokens cost little.
double step_seconds(const Plan& plan, int n_tokens);

// The VRAM budget left for a speculative target model after its draft model's plan: the draft
// runs at every step (its tokens are sequential), so the planner places it on the GPU first and
// the target takes what remains.
uint64_t budget_after_draft(const Plan& draft, uint64_t vram_budget);

// GPU memory the compute buffers take (activations of one micro-batch, LM-head chunk, activation
// quantization, a dequantization tile for GEMM, cuBLAS workspace, attention partials).
inline constexpr uint64_t kCudaContextBytes = uint64_t(400) << 20;  // counted in compute_gpu_bytes
uint64_t gpu_compute_bytes(const ModelShape& s, int ubatch);
uint64_t cpu_compute_bytes(const ModelShape& s, int ubatch);
// One attention layer's KV cache of ctx positions, exactly as allocated.
uint64_t kv_layer_bytes(const ModelShape& s, int64_t ctx, KvType k, KvType v);
inline uint64_t kv_layer_bytes(const ModelShape& s, int64_t ctx, KvType t) {
  return kv_layer_bytes(s, ctx, t, t);
}

// Makes the plan. Throws straw::Error when forced placements (gpu_layers, overrides) do not fit
// the budget, saying how much is missing.
Plan make_plan(const ModelShape& shape, const std::vector<TensorDesc>& tensors,
               const PlanOptions& options, const Speeds& speeds);

// Which unit a tensor belongs to: layer index (or -1 for global) and part (Experts: an MoE layer's
// ffn_{gate,up,down}_exps; its router and shared expert are Ffn).
enum class Part { Attn, Ffn, Experts, Output, Embedding, Other };
struct UnitOf {
  int layer = -1;
  Part part = Part::Other;
};
UnitOf unit_of(const std::string& tensor_name);

}  // namespace straw::sched
