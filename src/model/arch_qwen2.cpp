// Qwen2 / Qwen2.5 (0.5B .. 72B): the llama block with biases on q, k and v and NEOX RoPE
// (pairs x[i], x[i + n_rot/2]).
//   h = x + Wo · Attn(RoPE_neox(Wq·n1 + bq), RoPE_neox(Wk·n1 + bk), Wv·n1 + bv)
//   x = h + W_down · (silu(W_gate·n2) ⊙ W_up·n2)
#include "model/transformer.h"

namespace straw::model {

namespace {
void layer(BlockContext& c, const LayerWeights& l, int il) {
  attention_block(c, l, il, {});  // biases are bound (required) for qwen2 in bind_weights
  swiglu_ffn_block(c, l, il);
}
}  // namespace

LayerFn qwen2_layer() { return layer; }

}  // namespace straw::model
