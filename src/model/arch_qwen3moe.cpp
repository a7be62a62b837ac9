// Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention (per-head q/k RMS norms, NEOX
// RoPE, head size from attention.key_length) and a mixture-of-experts FFN in every layer: a
// router over expert_count SwiGLU experts, of which each token uses expert_used_count.
//   h = x + Wo · Attn(RoPE_neox(q), RoPE_neox(k), Wv·n1)
//   x = h + sum_k p_k W_down[e_k] · (silu(W_gate[e_k]·n2) ⊙ W_up[e_k]·n2)
#include "model/transformer.h"

namespace straw::model {

namespace {
void layer(BlockContext& c, const LayerWeights& l, int il) {
  attention_block(c, l, il, {.qk_norm = true});
  moe_ffn_block(c, l, il);
}
}  // namespace

LayerFn qwen3moe_layer() { return layer; }

}  // namespace straw::model
