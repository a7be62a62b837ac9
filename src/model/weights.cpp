#include "model/weights.h"

#include "gguf/gguf.h"
#include "quant/types.h"
#include "util/str.h"

namespace straw::model {

ops::Weight weight_view(const gguf::Reader& r, const std::string& name) {
  const gguf::TensorInfo& t = r.tensor(name);
  ops::Weight w;
  w.type = t.type;
  w.n_in = t.ne[0];
  w.n_out = t.n_dims >= 3 ? t.ne[1] : t.n_rows();
  w.n_expert = t.n_dims >= 3 ? t.ne[2] * t.ne[3] : 1;
  w.row_bytes = quant::row_bytes(t.type, t.ne[0]);
  w.expert_bytes = size_t(w.n_out) * w.row_bytes;
  w.data = t.data;
  return w;
}

namespace {

class Binder {
 public:
  Binder(const gguf::Reader& r) : r_(r) {}

  // Required tensor with the given shape (ne0, ne1); ne1 = 1 for vectors.
  ops::Weight need(const std::string& name, int64_t ne0, int64_t ne1, bool f32 = false) {
    require(name);
    return check(name, ne0, ne1, f32);
  }

  // Required expert tensor of shape (ne0, ne1, n_expert): n_expert matrices of [ne1][ne0].
  ops::Weight need_experts(const std::string& name, int64_t ne0, int64_t ne1, int64_t n_expert) {
    require(name);
    ops::Weight w = weight_view(r_, name);
    if (w.n_in != ne0 || w.n_out != ne1 || w.n_expert != n_expert)
      fail(r_.path(), ": tensor '", name, "' has shape [", w.n_in, ", ", w.n_out, ", ", w.n_expert,
           "], expected [", ne0, ", ", ne1, ", ", n_expert,
           "] from the hyperparameters (expert_count, expert_feed_forward_length)");
    return w;
  }

  ops::Weight optional(const std::string& name, int64_t ne0, int64_t ne1, bool f32 = false) {
    if (!r_.find_tensor(name)) return {};
    return check(name, ne0, ne1, f32);
  }

 private:
  void require(const std::string& name) {
    if (!r_.find_tensor(name))
      fail(r_.path(), ": tensor '", name,
           "' is missing (the file does not match its architecture '",
           r_.get_string("general.architecture"), "')");
  }

  ops::Weight check(const std::string& name, int64_t ne0, int64_t ne1, bool f32) {
    ops::Weight w = weight_view(r_, name);
    if (w.n_in != ne0 || w.n_out != ne1 || w.n_expert != 1)
      fail(r_.path(), ": tensor '", name, "' has shape [", w.n_in, ", ", w.n_out, "], expected [",
           ne0, ", ", ne1, "] from the hyperparameters");
    if (f32 && w.type != quant::Type::F32)
      fail(r_.path(), ": tensor '", name, "' has type ", quant::type_name(w.type),
           ", expected F32 (norm weights and biases are never quantized)");
    return w;
  }

  const gguf::Reader& r_;
};

// qwen35: a gated-attention or a linear-attention (Gated DeltaNet) layer, then the FFN, whose
// norm is post_attention_norm. An MTP / NextN block (past n_layer) is a gated-attention block of
// this kind too (bind_mtp_weights).
void bind_qwen35_layer(Binder& b, const HParams& hp, const std::string& p, bool recurrent,
                       LayerWeights& l) {
  const int64_t E = hp.n_embd, F = hp.n_ff;
  l.attn_norm = b.need(p + "attn_norm.weight", E, 1, true);
  if (recurrent) {
    const int64_t conv = hp.ssm_conv_dim();
    l.ssm_qkv = b.need(p + "attn_qkv.weight", E, conv);
    l.ssm_z = b.need(p + "attn_gate.weight", E, hp.ssm_inner);
    l.ssm_conv = b.need(p + "ssm_conv1d.weight", hp.ssm_conv_kernel, conv, true);
    l.ssm_conv.n_in *= l.ssm_conv.n_out;  // the taps of every channel, read as one vector
    l.ssm_conv.n_out = 1;
    l.ssm_conv.row_bytes = size_t(l.ssm_conv.n_in) * sizeof(float);
    l.ssm_dt = b.need(p + "ssm_dt.bias", hp.ssm_v_heads, 1, true);
    l.ssm_a = b.need(p + "ssm_a", hp.ssm_v_heads, 1, true);
    l.ssm_beta = b.need(p + "ssm_beta.weight", E, hp.ssm_v_heads);
    l.ssm_alpha = b.need(p + "ssm_alpha.weight", E, hp.ssm_v_heads);
    l.ssm_norm = b.need(p + "ssm_norm.weight", hp.ssm_head_dim, 1, true);
    l.ssm_out = b.need(p + "ssm_out.weight", hp.ssm_inner, E);
  } else {
    const int64_t Q = int64_t(hp.n_head) * hp.head_dim;
    l.wq = b.need(p + "attn_q.weight", E, 2 * Q);
    l.wk = b.need(p + "attn_k.weight", E, int64_t(hp.n_head_kv) * hp.head_dim);
    l.wv = b.need(p + "attn_v.weight", E, int64_t(hp.n_head_kv) * hp.head_dim_v);
    l.wo = b.need(p + "attn_output.weight", int64_t(hp.n_head) * hp.head_dim_v, E);
    l.q_norm = b.need(p + "attn_q_norm.weight", hp.head_dim, 1, true);
    l.k_norm = b.need(p + "attn_k_norm.weight", hp.head_dim, 1, true);
  }
  l.ffn_norm = b.need(p + "post_attention_norm.weight", E, 1, true);
  if (hp.moe()) {
    // qwen35moe: routed experts and a shared expert with a sigmoid gate.
    const int64_t X = hp.n_expert, FX = hp.n_ff_exp, FS = hp.n_ff_shexp;
    l.router = b.need(p + "ffn_gate_inp.weight", E, X);
    l.gate_exps = b.need_experts(p + "ffn_gate_exps.weight", E, FX, X);
    l.up_exps = b.need_experts(p + "ffn_up_exps.weight", E, FX, X);
    l.down_exps = b.need_experts(p + "ffn_down_exps.weight", FX, E, X);
    if (FS > 0) {
      l.gate_inp_shexp = b.need(p + "ffn_gate_inp_shexp.weight", E, 1, true);
      l.gate_shexp = b.need(p + "ffn_gate_shexp.weight", E, FS);
      l.up_shexp = b.need(p + "ffn_up_shexp.weight", E, FS);
      l.down_shexp = b.need(p + "ffn_down_shexp.weight", FS, E);
    }
    return;
  }
  l.w_gate = b.need(p + "ffn_gate.weight", E, F);
  l.w_up = b.need(p + "ffn_up.weight", E, F);
  l.w_down = b.need(p + "ffn_down.weight", F, E);
}

}  // namespace

Weights bind_weights(const gguf::Reader& r, const HParams& hp) {
  Binder b(r);
  Weights w;
  const int64_t E = hp.n_embd, F = hp.n_ff;
  const int64_t Q = int64_t(hp.n_head) * hp.head_dim;
  const int64_t K = int64_t(hp.n_head_kv) * hp.head_dim;
  const int64_t V = int64_t(hp.n_head_kv) * hp.head_dim_v;
  const int64_t O = int64_t(hp.n_head) * hp.head_dim_v;

  const gguf::TensorInfo& emb = r.tensor("token_embd.weight");
  w.tok_embd = b.need("token_embd.weight", E, emb.n_rows());
  w.output_norm = b.need("output_norm.weight", E, 1, true);
  if (r.find_tensor("output.weight")) {
    w.output = b.need("output.weight", E, emb.n_rows());
  } else {
    w.output = w.tok_embd;
    w.tied_output = true;
  }
  w.rope_freqs = b.optional("rope_freqs.weight", hp.rope.n_rot / 2, 1, true);

  w.layers.resize(hp.n_layer);
  for (int i = 0; i < hp.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights& l = w.layers[i];
    if (hp.arch == Arch::Qwen35 || hp.arch == Arch::Qwen35Moe) {
      bind_qwen35_layer(b, hp, p, hp.is_recurrent(i), l);
      continue;
    }
    l.attn_norm = b.need(p + "attn_norm.weight", E, 1, true);
    l.wq = b.need(p + "attn_q.weight", E, Q);
    l.wk = b.need(p + "attn_k.weight", E, K);
    l.wv = b.need(p + "attn_v.weight", E, V);
    l.wo = b.need(p + "attn_output.weight", O, E);
    const bool biases_required = hp.arch == Arch::Qwen2;
    auto bias = [&](const std::string& n, int64_t len) {
      return biases_required ? b.need(n, len, 1, true) : b.optional(n, len, 1, true);
    };
    l.bq = bias(p + "attn_q.bias", Q);
    l.bk = bias(p + "attn_k.bias", K);
    l.bv = bias(p + "attn_v.bias", V);
    l.bo = b.optional(p + "attn_output.bias", E, 1, true);
    if (hp.arch == Arch::Qwen3 || hp.arch == Arch::Qwen3Moe) {
      l.q_norm = b.need(p + "attn_q_norm.weight", hp.head_dim, 1, true);
      l.k_norm = b.need(p + "attn_k_norm.weight", hp.head_dim, 1, true);
    }
    l.rope_freqs = w.rope_freqs;
    l.ffn_norm = b.need(p + "ffn_norm.weight", E, 1, true);
    if (hp.moe()) {
      const int64_t X = hp.n_expert, FX = hp.n_ff_exp;
      l.router = b.need(p + "ffn_gate_inp.weight", E, X);
      l.gate_exps = b.need_experts(p + "ffn_gate_exps.weight", E, FX, X);
      l.up_exps = b.need_experts(p + "ffn_up_exps.weight", E, FX, X);
      l.down_exps = b.need_experts(p + "ffn_down_exps.weight", FX, E, X);
    } else {
      l.w_gate = b.need(p + "ffn_gate.weight", E, F);
      l.w_up = b.need(p + "ffn_up.weight", E, F);
      l.w_down = b.need(p + "ffn_down.weight", F, E);
    }
  }
  return w;
}

std::vector<MtpWeights> bind_mtp_weights(const gguf::Reader& r, const HParams& hp, const Weights& w,
                                         ops::Backend& be) {
  Binder b(r);
  const int64_t E = hp.n_embd, V = w.tok_embd.n_out;
  std::vector<MtpWeights> out(size_t(hp.n_mtp));
  for (int j = 0; j < hp.n_mtp; ++j) {
    const std::string p = "blk." + std::to_string(hp.n_layer + j) + ".";
    MtpWeights& m = out[size_t(j)];
    m.eh_proj = b.need(p + "nextn.eh_proj.weight", 2 * E, E);
    m.enorm = b.need(p + "nextn.enorm.weight", E, 1, true);
    m.hnorm = b.need(p + "nextn.hnorm.weight", E, 1, true);
    m.shared_head_norm = b.need(p + "nextn.shared_head_norm.weight", E, 1, true);
    m.embed = b.optional(p + "nextn.embed_tokens.weight", E, V);
    if (!m.embed) m.embed = w.tok_embd;
    m.head = b.optional(p + "nextn.shared_head_head.weight", E, V);
    m.own_head = bool(m.head);
    if (!m.own_head) m.head = w.output;  // already placed on the output backend
    bind_qwen35_layer(b, hp, p, /*recurrent=*/false, m.block);
    // The embedding table stays in place (one row per token, as token_embd); the rest goes to be.
    LayerWeights& l = m.block;
    for (ops::Weight* x : {&m.eh_proj,    &m.enorm,    &m.hnorm,     &m.shared_head_norm,
                           &l.attn_norm,  &l.wq,       &l.wk,        &l.wv,
                           &l.wo,         &l.q_norm,   &l.k_norm,    &l.ffn_norm,
                           &l.w_gate,     &l.w_up,     &l.w_down,    &l.router,
                           &l.gate_exps,  &l.up_exps,  &l.down_exps, &l.gate_inp_shexp,
                           &l.gate_shexp, &l.up_shexp, &l.down_shexp})
      if (*x) *x = be.prepare_weight(*x);
    if (m.own_head) m.head = be.prepare_weight(m.head);
  }
  return out;
}

void for_each_placed_weight(Weights& w, const DeviceMap& d,
                            const std::function<void(ops::Weight&, ops::Backend&)>& fn) {
  fn(w.output, *d.output);
  fn(w.output_norm, *d.output);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    LayerWeights& l = w.layers[i];
    for (ops::Weight* m :
         {&l.attn_norm, &l.wq,     &l.wk,     &l.wv,       &l.wo,         &l.bq,       &l.bk,
          &l.bv,        &l.bo,     &l.q_norm, &l.k_norm,   &l.rope_freqs, &l.ssm_qkv,  &l.ssm_z,
          &l.ssm_conv,  &l.ssm_dt, &l.ssm_a,  &l.ssm_beta, &l.ssm_alpha,  &l.ssm_norm, &l.ssm_out})
      if (*m) fn(*m, *d.attn[i]);
    for (ops::Weight* m : {&l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down, &l.router, &l.gate_inp_shexp,
                           &l.gate_shexp, &l.up_shexp, &l.down_shexp})
      if (*m) fn(*m, *d.ffn[i]);
    for (ops::Weight* m : {&l.gate_exps, &l.up_exps, &l.down_exps})
      if (*m) fn(*m, *d.experts[i]);
  }
}

void prepare_weights(Weights& w, const DeviceMap& d) {
  for_each_placed_weight(w, d, [](ops::Weight& m, ops::Backend& be) { m = be.prepare_weight(m); });
}

}  // namespace straw::model
