// Hyperparameters of a decoder-only transformer, read from the `{arch}.*` GGUF metadata.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "ops/backend.h"
#include "sched/plan.h"

namespace straw::gguf {
class Reader;
}

namespace straw::model {

enum class Arch { Llama, Qwen2, Qwen3, Qwen35, Qwen3Moe, Qwen35Moe };

// "llama, qwen2, qwen3, qwen35, qwen3moe, qwen35moe": for error messages.
const char* supported_architectures();

struct HParams {
  Arch arch = Arch::Llama;
  std::string arch_name;    // general.architecture as stored
  int64_t n_vocab = 0;      // rows of token_embd
  int64_t n_ctx_train = 0;  // {arch}.context_length
  int64_t n_embd = 0;       // {arch}.embedding_length: residual stream width
  int n_layer = 0;          // {arch}.block_count (minus nextn_predict_layers)
  int n_mtp = 0;            // {arch}.nextn_predict_layers: MTP / NextN blocks stored after the
                            // n_layer ones (blk.n_layer..), the draft head of speculative decoding
  int n_head = 0;           // {arch}.attention.head_count
  int n_head_kv = 0;        // {arch}.attention.head_count_kv (default n_head)
  int head_dim = 0;         // {arch}.attention.key_length (default n_embd / n_head)
  int head_dim_v = 0;       // {arch}.attention.value_length (default head_dim)
  int64_t n_ff = 0;         // {arch}.feed_forward_length
  float rms_eps = 1e-5f;    // {arch}.attention.layer_norm_rms_epsilon
  float attn_scale = 0;     // 1/sqrt(head_dim) unless {arch}.attention.scale is set
  ops::RopeParams rope;     // mode from the architecture, n_rot, base, linear / YaRN scaling
  int64_t n_ctx_yarn = 0;   // YaRN: rope.scaling.original_context_length x factor (0: no YaRN)

  // The longest context a session may have: the trained one, or YaRN's extended one.
  int64_t n_ctx_max() const { return std::max(n_ctx_train, n_ctx_yarn); }

  // qwen35 (Qwen3.5): gated attention layers and Gated DeltaNet (linear attention) layers.
  bool attn_output_gate = false;   // attn_q rows hold [q | gate] per head; o = attn * sigmoid(gate)
  std::vector<uint8_t> recurrent;  // [n_layer] 1: a linear-attention layer (empty: none)
  int ssm_conv_kernel = 0;         // {arch}.ssm.conv_kernel: taps of the causal conv
  int64_t ssm_inner = 0;           // {arch}.ssm.inner_size: value heads x value head size
  int ssm_head_dim = 0;            // {arch}.ssm.state_size: size of every q, k and v head
  int ssm_k_heads = 0;             // {arch}.ssm.group_count: query / key heads
  int ssm_v_heads = 0;             // {arch}.ssm.time_step_rank: value heads

  bool is_recurrent(int il) const { return !recurrent.empty() && recurrent[size_t(il)] != 0; }
  bool has_recurrent() const;
  // Channels of the fused qkv projection and of the conv: q and k (key heads) then v.
  int64_t ssm_conv_dim() const { return 2 * int64_t(ssm_k_heads) * ssm_head_dim + ssm_inner; }
  // F32 elements of one linear layer's recurrent state: conv state + delta-rule state.
  int64_t ssm_conv_state_elements() const { return int64_t(ssm_conv_kernel - 1) * ssm_conv_dim(); }
  int64_t ssm_state_elements() const { return int64_t(ssm_v_heads) * ssm_head_dim * ssm_head_dim; }
  size_t recurrent_layer_bytes() const {
    return size_t(ssm_conv_state_elements() + ssm_state_elements()) * sizeof(float);
  }
  // Mixture of experts (qwen3moe); n_expert is 0 for dense models.
  int n_expert = 0;                 // {arch}.expert_count: experts per MoE layer
  int n_expert_used = 0;            // {arch}.expert_used_count: experts each token is routed to
  int64_t n_ff_exp = 0;             // {arch}.expert_feed_forward_length (default n_ff / n_used)
  int64_t n_ff_shexp = 0;           // {arch}.expert_shared_feed_forward_length: the shared
                                    // expert's width (qwen35moe); 0: no shared expert
  bool expert_weights_norm = true;  // {arch}.expert_weights_norm: renormalise the top-k weights
  float expert_weights_scale = 0;   // {arch}.expert_weights_scale: 0 (or 1) for none
  bool moe() const { return n_expert > 0; }
};

// Reads and validates the hyperparameters; throws straw::Error naming the file and the missing or
// inconsistent key. An unknown architecture's error lists the supported ones.
HParams read_hparams(const gguf::Reader& r);

// The model as the placement planner sees it (n_vocab: rows of token_embd).
sched::ModelShape plan_shape(const HParams& hp, int64_t n_vocab);

}  // namespace straw::model
