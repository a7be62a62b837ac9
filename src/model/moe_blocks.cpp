// The mixture-of-experts FFN sub-block, written as op calls with the math beside them (llama.cpp's
// build_moe_ffn with softmax gating and SwiGLU experts), and qwen35moe's gated shared expert.
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
  if (l.up_shexp) {
    // s = sigmoid(w_g · n) * W_down_s (silu(W_gate_s n) * (W_up_s n));  x += s
    // (the routed slots' buffers are free again: gate/up hold n_ff_shexp per token, experts n_embd)
    const int64_t FS = hp.n_ff_shexp;
    const ops::MatmulJob gate_up[] = {{&l.gate_shexp, a.gate}, {&l.up_shexp, a.up}};
    c.be->matmul_many(gate_up, a.xn, T);
    c.be->swiglu(a.gate, a.up, a.gate, int64_t(T) * FS);
    c.be->matmul(l.down_shexp, a.gate, a.experts, T);
    c.be->matmul(l.gate_inp_shexp, a.xn, a.router, T);
    c.be->sigmoid_scale_rows(a.experts, a.router, T, hp.n_embd);
    c.be->add(a.proj, a.experts, int64_t(T) * hp.n_embd);
  }
  c.be->add(a.x, a.proj, int64_t(T) * hp.n_embd);
}

}  // namespace straw::model
