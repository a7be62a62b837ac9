// Qwen3.5 dense (qwen35): three of every four layers (full_attention_interval) are Gated DeltaNet
// linear attention with a fixed-size recurrent state, the others gated attention with a KV cache:
// Wq gives [q | gate] per head, q and k get per-head RMSNorm, NEOX RoPE on the first n_rot
// dimensions (IMRoPE with text positions), and the attention output is gated by sigmoid(gate).
// post_attention_norm is the norm before the FFN.
//   h = x + (linear ? DeltaNet(n1) : Wo · (Attn(RoPE(q), RoPE(k), v) ⊙ sigmoid(gate)))
//   x = h + W_down · (silu(W_gate·n2) ⊙ W_up·n2),  n2 = RMSNorm(h)·post_attention_norm
// The MTP / NextN block (files with nextn_predict_layers; Qwen3-Next's multi-token prediction)
// predicts the token after next: for position i, with h_i the main model's last hidden state
// after output_norm and e the embedding of t_{i+1},
//   x = W_eh · [RMSNorm(e)·enorm | RMSNorm(h_i)·hnorm]
//   x = the gated-attention block above (its own KV cache, RoPE at position i) and the FFN
//   logits(t_{i+2}) = W_head · RMSNorm(x)·shared_head_norm
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
void mtp(BlockContext& c, const MtpWeights& m, int il, const float* h) {
  mtp_input_block(c, m, h);
  attention_block(c, m.block, il, {.qk_norm = true, .output_gate = true});
  swiglu_ffn_block(c, m.block, il);
}
}  // namespace

LayerFn qwen35_layer() {
  return layer;
}
MtpFn qwen35_mtp() {
  return mtp;
}

}  // namespace straw::model
