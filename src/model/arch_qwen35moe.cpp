// Qwen3.5 MoE (qwen35moe: Qwen3.5-35B-A3B, -122B-A10B): qwen35's layers (Gated DeltaNet linear
// attention in three of every four, gated attention in the others; model/arch_qwen35.cpp) with a
// mixture-of-experts FFN: routed SwiGLU experts and a shared expert scaled by a sigmoid gate.
//   h = x + (linear ? DeltaNet(n1) : Wo · (Attn(RoPE(q), RoPE(k), v) ⊙ sigmoid(gate)))
//   x = h + sum_k p_k E_k(n2) + sigmoid(w_g · n2) S(n2),  n2 = RMSNorm(h)·post_attention_norm
// The MTP / NextN block is qwen35's (arch_qwen35.cpp) with this MoE FFN.
#include "model/transformer.h"

namespace straw::model {

namespace {
void layer(BlockContext& c, const LayerWeights& l, int il) {
  if (c.hp.is_recurrent(il))
    delta_net_block(c, l, il);
  else
    attention_block(c, l, il, {.qk_norm = true, .output_gate = true});
  moe_ffn_block(c, l, il);
}
void mtp(BlockContext& c, const MtpWeights& m, int il, const float* h) {
  mtp_input_block(c, m, h);
  attention_block(c, m.block, il, {.qk_norm = true, .output_gate = true});
  moe_ffn_block(c, m.block, il);
}
}  // namespace

LayerFn qwen35moe_layer() {
  return layer;
}
MtpFn qwen35moe_mtp() {
  return mtp;
}

}  // namespace straw::model
