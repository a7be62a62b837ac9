// Qwen3.5 dense (qwen35): three of every four layers (full_attention_interval) are Gated DeltaNet
// linear attention with a fixed-size recurrent state, the others gated attention with a KV cache:
// Wq gives [q | gate] per head, q and k get per-head RMSNorm, NEOX RoPE on the first n_rot
// dimensions (IMRoPE with text positions), and the attention output is gated by sigmoid(gate).
// post_attention_norm is the norm before the FFN.
//   h = x + (linear ? DeltaNet(n1) : Wo · (Attn(RoPE(q), RoPE(k), v) ⊙ sigmoid(gate)))
//   x = h + W_down · (silu(W_gate·n2) ⊙ W_up·n2),  n2 = RMSNorm(h)·post_attention_norm
#include "model/transformer.h"

namespace straw::model {

namespace {
void layer(BlockContext& c, const LayerWeights& l, int il) {
  if (c.hp.is_recurrent(il))
    delta_net_block(c, l, il);
  else
    attention_block(c, l, il, {.qk_norm = true, .output_gate = true});
  swiglu_ffn_block(c, l, il);
}
}  // namespace

LayerFn qwen35_layer() {
  return layer;
}

}  // namespace straw::model
