// Qwen3 (dense): no biases; per-head RMSNorm of q and k (attn_q_norm, attn_k_norm over head_dim)
// before NEOX RoPE; head size from attention.key_length (128 even where n_embd/n_head is 64).
//   q_h = RMSNorm(Wq·n1)_h · q_norm,  k_h = RMSNorm(Wk·n1)_h · k_norm
//   h = x + Wo · Attn(RoPE_neox(q), RoPE_neox(k), Wv·n1)
//   x = h + W_down · (silu(W_gate·n2) ⊙ W_up·n2)
#include "model/transformer.h"

namespace straw::model {

namespace {
void layer(BlockContext& c, const LayerWeights& l, int il) {
  attention_block(c, l, il, {.qk_norm = true});
  swiglu_ffn_block(c, l, il);
}
}  // namespace

LayerFn qwen3_layer() { return layer; }

}  // namespace straw::model
