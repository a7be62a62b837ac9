// The mixture-of-experts FFN sub-block, written as op calls with the math beside them (llama.cpp's
// build_moe_ffn with softmax gating and SwiGLU experts), and qwen35moe's gated shared expert.
#include "model/transformer.h"

namespace straw::model {

namespace {

// The routed experts on backend xb: the FFN's own, or another one that holds the expert tensors
// (experts in RAM, router and shared expert on the GPU: llama.cpp's --cpu-moe). The normed input
// and the routing (ids, weights) are copied there; the weighted sum comes back into c.a->proj.
void routed_experts(BlockContext& c, const LayerWeights& l, ops::Backend* xb) {
  const HParams& hp = c.hp;
  const int T = c.n_tokens;
  const int K = hp.n_expert_used;
  Activations& a = *c.a;
  Activations& e = c.exec.activations(xb);
  const size_t slots = size_t(T) * K;
  c.exec.transfer(c.be, a.xn, xb, e.xn, size_t(T) * hp.n_embd * sizeof(float));
  c.exec.transfer(c.be, a.expert_ids, xb, e.expert_ids, slots * sizeof(int32_t));
  c.exec.transfer(c.be, a.expert_w, xb, e.expert_w, slots * sizeof(float));
  // h_k = silu(W_gate[e_k] n) * (W_up[e_k] n)   ([T][K][n_ff_exp])
  xb->moe_matmul(l.gate_exps, e.xn, false, e.expert_ids, T, K, e.gate);
  xb->moe_matmul(l.up_exps, e.xn, false, e.expert_ids, T, K, e.up);
  xb->swiglu(e.gate, e.up, e.gate, int64_t(T) * K * hp.n_ff_exp);
  // d_k = W_down[e_k] h_k   ([T][K][n_embd])
  xb->moe_matmul(l.down_exps, e.gate, true, e.expert_ids, T, K, e.experts);
  // sum_k p_k d_k
  xb->moe_combine(e.experts, e.expert_w, T, K, hp.n_embd, e.proj);
  c.exec.transfer(xb, e.proj, c.be, a.proj, size_t(T) * hp.n_embd * sizeof(float));
}

}  // namespace

void moe_ffn_block(BlockContext& c, const LayerWeights& l, int il) {
  c.enter(BlockContext::Part::Ffn, il);
  const HParams& hp = c.hp;
  const int T = c.n_tokens;
  Activations& a = *c.a;
  // n = RMSNorm(x) * ffn_norm
  c.be->rmsnorm(a.x, l.ffn_norm, a.xn, T, hp.n_embd, hp.rms_eps);
  // r = W_router n;  (e_k, p_k) = top-K of softmax(r), p renormalised to sum 1
  c.be->matmul(l.router, a.xn, a.router, T);
  c.be->moe_route(a.router, T, hp.n_expert, hp.n_expert_used, hp.expert_weights_norm,
                  hp.expert_weights_scale, a.expert_ids, a.expert_w);
  // x += sum_k p_k W_down[e_k] (silu(W_gate[e_k] n) * (W_up[e_k] n))   (proj: the sum)
  routed_experts(c, l, c.experts_backend(il));
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
