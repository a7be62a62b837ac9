// The mixture-of-experts FFN sub-block, written as op calls with the math beside them (llama.cpp's
// build_moe_ffn with softmax gating and SwiGLU experts).
#include "model/transformer.h"

namespace straw::model {

void moe_ffn_block(BlockContext& c, const LayerWeights& l, int il) {
  c.enter(BlockContext::Part::Ffn, il);
  const HParams& hp = c.hp;
  const int T = c.n_tokens;
  const int K = hp.n_expert_used;
  Activations& a = *c.a;
  // n = RMSNorm(x) * ffn_norm
  c.be->rmsnorm(a.x, l.ffn_norm, a.xn, T, hp.n_embd, hp.rms_eps);
  // r = W_router n;  (e_k, p_k) = top-K of softmax(r), p renormalised to sum 1
  c.be->matmul(l.router, a.xn, a.router, T);
  c.be->moe_route(a.router, T, hp.n_expert, K, hp.expert_weights_norm, hp.expert_weights_scale,
                  a.expert_ids, a.expert_w);
  // h_k = silu(W_gate[e_k] n) * (W_up[e_k] n)   ([T][K][n_ff_exp])
  c.be->moe_matmul(l.gate_exps, a.xn, false, a.expert_ids, T, K, a.gate);
  c.be->moe_matmul(l.up_exps, a.xn, false, a.expert_ids, T, K, a.up);
  c.be->swiglu(a.gate, a.up, a.gate, int64_t(T) * K * hp.n_ff_exp);
  // d_k = W_down[e_k] h_k   ([T][K][n_embd])
  c.be->moe_matmul(l.down_exps, a.gate, true, a.expert_ids, T, K, a.experts);
  // x += sum_k p_k d_k
  c.be->moe_combine(a.experts, a.expert_w, T, K, hp.n_embd, a.proj);
  c.be->add(a.x, a.proj, int64_t(T) * hp.n_embd);
}

}  // namespace straw::model
