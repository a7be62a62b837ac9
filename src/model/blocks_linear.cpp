// Gated DeltaNet linear attention (qwen35, and qwen35moe with an MoE FFN after it), written as op
// calls with the math beside them. Its per-sequence memory is the recurrent state (conv state and
// delta-rule state) instead of a KV cache.
#include <cmath>

#include "model/transformer.h"

namespace straw::model {

void delta_net_block(BlockContext& c, const LayerWeights& l, int il) {
  c.enter(BlockContext::Part::Attn, il);
  const HParams& hp = c.hp;
  const int T = c.n_tokens;
  const int S = hp.ssm_head_dim, Hk = hp.ssm_k_heads, Hv = hp.ssm_v_heads;
  const int64_t C = hp.ssm_conv_dim();
  Activations& a = *c.a;

  // n = RMSNorm(x) * attn_norm
  c.be->rmsnorm(a.x, l.attn_norm, a.xn, T, hp.n_embd, hp.rms_eps);
  // [q k v] = W_qkv n;  z = W_z n;  beta = W_beta n;  alpha = W_alpha n
  const ops::MatmulJob in[] = {
      {&l.ssm_qkv, a.mix}, {&l.ssm_z, a.z}, {&l.ssm_beta, a.beta}, {&l.ssm_alpha, a.alpha}};
  c.be->matmul_many(in, a.xn, T);
  // g = softplus(alpha + dt_bias) * a  (log decay, <= 0);  beta = sigmoid(beta)
  c.be->delta_net_gates(a.alpha, a.beta, l.ssm_dt, l.ssm_a, T, Hv);
  // Per sequence (its rows and its recurrent state):
  for (const SeqRows& s : c.seqs) {
    const RecurrentState::Layer st = s.rs->layer(il);
    float* conv = a.conv + int64_t(s.row0) * C;
    // [q k v] = SiLU(causal depthwise conv over time of [q k v]), with the layer's conv state
    ops::ConvParams cp;
    cp.n_tokens = s.n;
    cp.n_channels = int(C);
    cp.kernel = hp.ssm_conv_kernel;
    cp.x = a.mix + int64_t(s.row0) * C;
    cp.x_stride = C;
    cp.w = static_cast<const float*>(l.ssm_conv.data);
    cp.state = st.conv;
    cp.y = conv;
    cp.silu = true;
    if (s.snapshot_after >= 0) {
      cp.snapshot = st.conv_snapshot;
      cp.snapshot_after = s.snapshot_after;
    }
    c.be->ssm_conv(cp);
    // q = q / ||q||, k = k / ||k|| per head (the 2 Hk heads at the start of each row)
    c.be->l2norm(conv, s.n, 2 * Hk, S, C, hp.rms_eps);
    // o = DeltaRule(q, k, v; g, beta) with the layer's state, read out scaled by 1/sqrt(S)
    ops::DeltaNetParams dp;
    dp.n_tokens = s.n;
    dp.n_k_heads = Hk;
    dp.n_v_heads = Hv;
    dp.head_dim = S;
    dp.q = conv;
    dp.k = conv + int64_t(Hk) * S;
    dp.qk_stride = C;
    dp.v = conv + 2 * int64_t(Hk) * S;
    dp.v_stride = C;
    dp.g = a.alpha + int64_t(s.row0) * Hv;
    dp.beta = a.beta + int64_t(s.row0) * Hv;
    dp.state = st.ssm;
    dp.out = a.attn + int64_t(s.row0) * Hv * S;
    dp.scale = 1.0f / std::sqrt(float(S));
    if (s.snapshot_after >= 0) {
      dp.snapshot = st.ssm_snapshot;
      dp.snapshot_after = s.snapshot_after;
    }
    c.be->gated_delta_net(dp);
  }
  // o_h = RMSNorm(o_h) * ssm_norm * silu(z_h)   per value head
  c.be->rmsnorm_gated(a.attn, l.ssm_norm, a.z, a.attn, int64_t(T) * Hv, S, hp.rms_eps);
  // x += W_out o
  c.be->matmul(l.ssm_out, a.attn, a.proj, T);
  c.be->add(a.x, a.proj, int64_t(T) * hp.n_embd);
}

}  // namespace straw::model
