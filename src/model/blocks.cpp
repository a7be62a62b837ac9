// The sub-blocks shared by every architecture, written as op calls with the math beside them.
#include "model/transformer.h"

namespace straw::model {

void attention_block(BlockContext& c, const LayerWeights& l, int il, const AttentionOptions& o) {
  c.enter(BlockContext::Part::Attn, il);
  const HParams& hp = c.hp;
  const int T = c.n_tokens;
  const int64_t E = hp.n_embd;
  const int64_t Q = int64_t(hp.n_head) * hp.head_dim;
  const int64_t K = int64_t(hp.n_head_kv) * hp.head_dim;
  const int64_t V = int64_t(hp.n_head_kv) * hp.head_dim_v;
  Activations& a = *c.a;

  // n = RMSNorm(x) * attn_norm
  c.be->rmsnorm(a.x, l.attn_norm, a.xn, T, E, hp.rms_eps);
  // q = Wq n + bq;  k = Wk n + bk;  v = Wv n + bv   (one call: they read the same n)
  const ops::MatmulJob qkv[] = {{&l.wq, o.output_gate ? a.mix : a.q}, {&l.wk, a.k}, {&l.wv, a.v}};
  c.be->matmul_many(qkv, a.xn, T);
  if (o.output_gate) {
    // [q_h | gate_h] = Wq n per head: q into a.q, the gate into a.z
    c.be->copy_rows(a.mix, 2 * hp.head_dim, a.q, hp.head_dim, int64_t(T) * hp.n_head, hp.head_dim);
    c.be->copy_rows(a.mix + hp.head_dim, 2 * hp.head_dim, a.z, hp.head_dim, int64_t(T) * hp.n_head,
                    hp.head_dim);
  }
  if (l.bq) c.be->add_bias(a.q, l.bq, T, Q);
  if (l.bk) c.be->add_bias(a.k, l.bk, T, K);
  if (l.bv) c.be->add_bias(a.v, l.bv, T, V);
  if (o.qk_norm) {
    // q_h = RMSNorm(q_h) * q_norm;  k_h = RMSNorm(k_h) * k_norm   (per head, before RoPE)
    c.be->rmsnorm(a.q, l.q_norm, a.q, int64_t(T) * hp.n_head, hp.head_dim, hp.rms_eps);
    c.be->rmsnorm(a.k, l.k_norm, a.k, int64_t(T) * hp.n_head_kv, hp.head_dim, hp.rms_eps);
  }
  ops::RopeParams rope = hp.rope;
  if (l.rope_freqs) rope.freq_factors = static_cast<const float*>(l.rope_freqs.data);
  // Per sequence (its rows, positions and cache):
  for (const SeqRows& s : c.seqs) {
    float* q = a.q + size_t(s.row0) * Q;
    float* k = a.k + size_t(s.row0) * K;
    // q, k = RoPE(q, pos), RoPE(k, pos)
    c.be->rope(q, s.n, hp.n_head, hp.head_dim, s.pos0, rope);
    c.be->rope(k, s.n, hp.n_head_kv, hp.head_dim, s.pos0, rope);
    // cache[pos] = k, v;  attn = softmax(q K^T * scale + causal mask) V
    const ops::KvLayer& kv = s.kv->layer(il);
    c.be->kv_store(kv, k, a.v + size_t(s.row0) * V, s.n, s.pos0, K, V);
    ops::AttentionParams ap;
    ap.n_tokens = s.n;
    ap.pos0 = s.pos0;
    ap.n_heads = hp.n_head;
    ap.n_kv_heads = hp.n_head_kv;
    ap.head_dim = hp.head_dim;
    ap.head_dim_v = hp.head_dim_v;
    ap.scale = hp.attn_scale;
    c.be->attention(q, kv, a.attn + size_t(s.row0) * hp.n_head * hp.head_dim_v, ap);
  }
  // attn = attn * sigmoid(gate)
  if (o.output_gate) c.be->sigmoid_mul(a.attn, a.z, int64_t(T) * hp.n_head * hp.head_dim_v);
  // x += Wo attn + bo
  c.be->matmul(l.wo, a.attn, a.proj, T);
  if (l.bo) c.be->add_bias(a.proj, l.bo, T, E);
  c.be->add(a.x, a.proj, int64_t(T) * E);
}

void mtp_input_block(BlockContext& c, const MtpWeights& m, const float* h) {
  const int T = c.n_tokens;
  const int64_t E = c.hp.n_embd;
  Activations& a = *c.a;
  // mtp_in = [RMSNorm(x) · enorm | RMSNorm(h) · hnorm]   (embedding first, as the checkpoint's fc)
  c.be->rmsnorm(a.x, m.enorm, a.xn, T, E, c.hp.rms_eps);
  c.be->copy_rows(a.xn, E, a.mtp_in, 2 * E, T, E);
  c.be->rmsnorm(h, m.hnorm, a.xn, T, E, c.hp.rms_eps);
  c.be->copy_rows(a.xn, E, a.mtp_in + E, 2 * E, T, E);
  // x = W_eh · mtp_in
  c.be->matmul(m.eh_proj, a.mtp_in, a.x, T);
}

void swiglu_ffn_block(BlockContext& c, const LayerWeights& l, int il) {
  c.enter(BlockContext::Part::Ffn, il);
  const HParams& hp = c.hp;
  const int T = c.n_tokens;
  Activations& a = *c.a;
  // n = RMSNorm(x) * ffn_norm
  c.be->rmsnorm(a.x, l.ffn_norm, a.xn, T, hp.n_embd, hp.rms_eps);
  // h = silu(W_gate n) * (W_up n)
  const ops::MatmulJob gate_up[] = {{&l.w_gate, a.gate}, {&l.w_up, a.up}};
  c.be->matmul_many(gate_up, a.xn, T);
  c.be->swiglu(a.gate, a.up, a.gate, int64_t(T) * hp.n_ff);
  // x += W_down h
  c.be->matmul(l.w_down, a.gate, a.proj, T);
  c.be->add(a.x, a.proj, int64_t(T) * hp.n_embd);
}

}  // namespace straw::model
