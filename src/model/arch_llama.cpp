// Llama 1/2/3/3.1, Mistral, TinyLlama, stories260K.
//   h = x + Wo · Attn(RoPE_norm(Wq·n1), RoPE_norm(Wk·n1), Wv·n1),   n1 = RMSNorm(x) · attn_norm
//   x = h + W_down · (silu(W_gate·n2) ⊙ W_up·n2),                    n2 = RMSNorm(h) · ffn_norm
// RoPE rotates adjacent pairs (the GGUF converter permuted q/k rows for it); Llama 3.1 divides
// the frequencies by rope_freqs.weight. Optional attn_output.bias is applied when present.
#include "model/transformer.h"

namespace straw::model {

namespace {
void layer(BlockContext& c, const LayerWeights& l, int il) {
  attention_block(c, l, il, {});
  swiglu_ffn_block(c, l, il);
}
}  // namespace

LayerFn llama_layer() { return layer; }

}  // namespace straw::model
