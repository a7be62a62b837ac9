#include "model/transformer.h"

#include <algorithm>

#include "util/str.h"

namespace straw::model {

namespace {

constexpr int kLogitRows = 64;  // LM-head rows computed per step when every token's logits are kept

size_t kv_row_bytes(const HParams& hp, ops::KvType type, int head_dim) {
  return ops::kv_row_bytes(type, int64_t(hp.n_head_kv) * head_dim);
}

}  // namespace

DeviceMap DeviceMap::single(ops::Backend& be, int n_layer) {
  DeviceMap m;
  m.attn.assign(size_t(n_layer), &be);
  m.ffn.assign(size_t(n_layer), &be);
  m.experts.assign(size_t(n_layer), &be);
  m.output = &be;
  m.embed = &be;
  return m;
}

size_t KvCache::layer_bytes(const HParams& hp, int64_t n_ctx, ops::KvType k_type,
                            ops::KvType v_type) {
  return size_t(n_ctx) *
         (kv_row_bytes(hp, k_type, hp.head_dim) + kv_row_bytes(hp, v_type, hp.head_dim_v));
}

KvCache::KvCache(const HParams& hp, int64_t n_ctx, ops::KvType k_type, ops::KvType v_type,
                 const DeviceMap& devices)
    : n_ctx_(n_ctx) {
  if (ops::kv_quantized(k_type) && hp.head_dim % 32 != 0)
    fail("a ", ops::kv_type_name(k_type),
         " K cache needs a key head size that is a multiple of 32; this model's is ", hp.head_dim,
         ": use --cache-type-k f16");
  if (ops::kv_quantized(v_type) && hp.head_dim_v % 32 != 0)
    fail("a ", ops::kv_type_name(v_type),
         " V cache needs a value head size that is a multiple of 32; this model's is ",
         hp.head_dim_v, ": use --cache-type-v f16");
  const size_t k_bytes = size_t(n_ctx) * kv_row_bytes(hp, k_type, hp.head_dim);
  layers_.resize(hp.n_layer);
  for (int i = 0; i < hp.n_layer; ++i) {
    if (hp.is_recurrent(i)) continue;  // a linear layer: a recurrent state instead (no KV)
    storage_.push_back(devices.attn[i]->alloc(layer_bytes(hp, n_ctx, k_type, v_type)));
    uint8_t* base = static_cast<uint8_t*>(storage_.back()->data());
    layers_[i] = {k_type, v_type, base, base + k_bytes, n_ctx, hp.n_head_kv};
  }
}

KvCache::KvCache(const HParams& hp, int64_t n_ctx, ops::KvType k_type, ops::KvType v_type,
                 ops::Backend& be)
    : n_ctx_(n_ctx) {
  if (ops::kv_quantized(k_type) && hp.head_dim % 32 != 0)
    fail("a ", ops::kv_type_name(k_type), " K cache needs a key head size that is a multiple of 32",
         "; this model's is ", hp.head_dim, ": use --cache-type-k f16");
  if (ops::kv_quantized(v_type) && hp.head_dim_v % 32 != 0)
    fail("a ", ops::kv_type_name(v_type), " V cache needs a value head size that is a multiple of ",
         "32; this model's is ", hp.head_dim_v, ": use --cache-type-v f16");
  const size_t k_bytes = size_t(n_ctx) * kv_row_bytes(hp, k_type, hp.head_dim);
  const size_t bytes = layer_bytes(hp, n_ctx, k_type, v_type);
  const std::vector<uint8_t> zeros(bytes, 0);
  layers_.resize(size_t(hp.n_layer + hp.n_mtp));
  for (int i = hp.n_layer; i < hp.n_layer + hp.n_mtp; ++i) {
    storage_.push_back(be.alloc(bytes));
    uint8_t* base = static_cast<uint8_t*>(storage_.back()->data());
    be.from_host(zeros.data(), base, bytes);
    layers_[size_t(i)] = {k_type, v_type, base, base + k_bytes, n_ctx, hp.n_head_kv};
  }
}

void Transformer::shift(KvCache& kv, int64_t n_keep, int64_t n_discard, int64_t n_past) {
  if (hp_.has_recurrent())
    fail("context shift is not possible for ", hp_.arch_name,
         " models: their linear-attention layers keep a recurrent state that cannot forget "
         "tokens; use a larger --ctx");
  if (n_keep < 0 || n_discard <= 0 || n_keep + n_discard > n_past || n_past > kv.n_ctx())
    fail("internal error: context shift keeping ", n_keep, " and dropping ", n_discard, " of ",
         n_past, " tokens");
  for (int il = 0; il < hp_.n_layer; ++il) {
    ops::KvShiftParams p;
    p.dst = n_keep;
    p.src = n_keep + n_discard;
    p.n = n_past - p.src;
    p.n_kv_heads = hp_.n_head_kv;
    p.head_dim = hp_.head_dim;
    p.head_dim_v = hp_.head_dim_v;
    p.rope = hp_.rope;
    const ops::Weight& ff = w_.layers[size_t(il)].rope_freqs;
    if (ff) p.rope.freq_factors = static_cast<const float*>(ff.data);
    devices_.attn[size_t(il)]->kv_shift(kv.layer(il), p);
  }
}

size_t KvCache::bytes() const {
  size_t b = 0;
  for (const auto& s : storage_) b += s->size();
  return b;
}

void BlockContext::enter(Part part, int il) {
  const DeviceMap& d = exec.devices();
  // The MTP / NextN blocks (il >= n_layer) run with the output head.
  const bool main = size_t(il) < d.attn.size();
  ops::Backend* to = part == Part::Attn && main  ? d.attn[il]
                     : part == Part::Ffn && main ? d.ffn[il]
                                                 : d.output;
  exec.move_to(*this, to);
}

ops::Backend* BlockContext::experts_backend(int il) const {
  const DeviceMap& d = exec.devices();
  return size_t(il) < d.experts.size() ? d.experts[size_t(il)] : d.output;
}

Transformer::Transformer(const HParams& hp, const Weights& w, const DeviceMap& devices,
                         int max_batch)
    : hp_(hp), w_(w), devices_(devices), max_batch_(max_batch) {
  const size_t n = size_t(hp.n_layer);
  if (devices_.attn.size() != n || devices_.ffn.size() != n || devices_.experts.size() != n ||
      !devices_.output || !devices_.embed)
    fail("internal error: a device map for ", devices_.attn.size(), "/", devices_.ffn.size(), "/",
         devices_.experts.size(), " (attention / FFN / experts) of ", n, " layers");
  switch (hp.arch) {
    case Arch::Llama:
      layer_ = llama_layer();
      break;
    case Arch::Qwen2:
      layer_ = qwen2_layer();
      break;
    case Arch::Qwen3:
      layer_ = qwen3_layer();
      break;
    case Arch::Qwen35:
      layer_ = qwen35_layer();
      mtp_ = qwen35_mtp();
      break;
    case Arch::Qwen3Moe:
      layer_ = qwen3moe_layer();
      break;
    case Arch::Qwen35Moe:
      layer_ = qwen35moe_layer();
      mtp_ = qwen35moe_mtp();
      break;
  }
  // One set of activation buffers per distinct backend; each buffer starts on a 64-byte boundary.
  std::vector<ops::Backend*> distinct = {devices_.embed, devices_.output};
  for (ops::Backend* b : devices_.attn) distinct.push_back(b);
  for (ops::Backend* b : devices_.ffn) distinct.push_back(b);
  for (ops::Backend* b : devices_.experts) distinct.push_back(b);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());

  const size_t B = size_t(max_batch);
  const size_t Q = size_t(hp.n_head) * hp.head_dim;
  const bool linear = hp.has_recurrent(), gated = hp.attn_output_gate;
  // The FFN's gate/up rows: n_ff, or for MoE n_used expert rows of n_ff_exp per token.
  const size_t ff =
      size_t(std::max<int64_t>({hp.n_ff, int64_t(hp.n_expert_used) * hp.n_ff_exp, hp.n_ff_shexp}));
  const size_t used = size_t(hp.n_expert_used);
  const size_t sizes[] = {
      B * hp.n_embd,                                                          // x
      B * hp.n_embd,                                                          // xn
      B * Q,                                                                  // q
      B * hp.n_head_kv * hp.head_dim,                                         // k
      B * hp.n_head_kv * hp.head_dim_v,                                       // v
      B * std::max<size_t>(size_t(hp.n_head) * hp.head_dim_v, hp.ssm_inner),  // attn
      B * ff,                                                                 // gate
      B * ff,                                                                 // up
      B * hp.n_embd,                                                          // proj
      size_t(std::min(max_batch, kLogitRows)) * hp.n_vocab,                   // logits
      B * std::max<size_t>(gated ? 2 * Q : 0, size_t(hp.ssm_conv_dim())),     // mix
      linear ? B * hp.ssm_conv_dim() : 0,                                     // conv
      B * std::max<size_t>(gated ? Q : 0, hp.ssm_inner),                      // z
      B * hp.ssm_v_heads,                                                     // alpha
      B * hp.ssm_v_heads,                                                     // beta
      B * size_t(hp.n_expert),                                                // router
      B * used,                                                               // expert_ids
      B * used,                                                               // expert_w
      B * used * hp.n_embd,                                                   // experts
      hp.n_mtp > 0 && mtp_ ? B * 2 * hp.n_embd : 0};                          // mtp_in
  auto padded = [](size_t n) { return (n + 15) / 16 * 16; };
  size_t total = 0;
  for (size_t n : sizes) total += padded(n);
  for (ops::Backend* be : distinct) {
    DeviceBuffers d{be, be->alloc(total * sizeof(float)), {}};
    // expert_ids (int32) takes a float-sized slot of its own.
    float* ids = nullptr;
    float** bufs[] = {&d.a.x,      &d.a.xn,   &d.a.q,        &d.a.k,       &d.a.v,
                      &d.a.attn,   &d.a.gate, &d.a.up,       &d.a.proj,    &d.a.logits,
                      &d.a.mix,    &d.a.conv, &d.a.z,        &d.a.alpha,   &d.a.beta,
                      &d.a.router, &ids,      &d.a.expert_w, &d.a.experts, &d.a.mtp_in};
    static_assert(std::size(bufs) == std::size(sizes));
    float* p = static_cast<float*>(d.storage->data());
    for (size_t i = 0; i < std::size(sizes); ++i) {
      *bufs[i] = sizes[i] ? p : nullptr;
      p += padded(sizes[i]);
    }
    d.a.expert_ids = reinterpret_cast<int32_t*>(ids);
    buffers_.push_back(std::move(d));
  }
  if (distinct.size() > 1) staging_.resize(B * hp.n_embd);
}

Activations& Transformer::activations_of(ops::Backend* be) {
  for (DeviceBuffers& d : buffers_)
    if (d.be == be) return d.a;
  fail("internal error: no activation buffers for a backend of the device map");
}

void Transformer::move_to(BlockContext& c, ops::Backend* to) {
  if (c.be == to) return;
  Activations& dst = activations_of(to);
  // x: [n_tokens][n_embd] floats.
  transfer(c.be, c.a->x, to, dst.x, size_t(c.n_tokens) * hp_.n_embd * sizeof(float));
  c.be = to;
  c.a = &dst;
}

void Transformer::transfer(ops::Backend* from, const void* src, ops::Backend* to, void* dst,
                           size_t bytes) {
  if (from == to || bytes == 0) return;
  if (bytes > staging_.size() * sizeof(float))
    fail("internal error: ", bytes, " bytes to move between devices, staging of ",
         staging_.size() * sizeof(float));
  from->to_host(src, staging_.data(), bytes);
  to->from_host(staging_.data(), dst, bytes);
}

void Transformer::forward(std::span<const int32_t> tokens, int64_t pos0, KvCache& kv, float* logits,
                          bool all_logits, RecurrentState* rs) {
  const SeqStep one{tokens, pos0, &kv, logits, all_logits, rs};
  forward(std::span(&one, 1));
}

void Transformer::forward(std::span<const SeqStep> seqs) {
  // Rows of the step: each sequence's tokens one after the other.
  rows_.clear();
  row_steps_.clear();
  bool keep_hidden = false;
  out_rows_.clear();
  std::vector<int32_t>& ids = step_tokens_;
  ids.clear();
  for (const SeqStep& s : seqs) {
    const int n = static_cast<int>(s.tokens.size());
    if (n == 0) continue;
    if (hp_.has_recurrent() && (!s.rs || s.rs->empty()))
      fail(
          "internal error: a model with linear-attention layers needs each sequence's recurrent "
          "state");
    if (s.pos0 + n > s.kv->n_ctx())
      fail("the context is full: ", s.pos0 + n, " tokens do not fit the context of ", s.kv->n_ctx(),
           " (use a larger --ctx, at most the model's ", hp_.n_ctx_max(), ")");
    rows_.push_back({static_cast<int>(ids.size()), n, s.pos0, s.kv, s.rs, s.snapshot_after});
    row_steps_.push_back(&s);
    ids.insert(ids.end(), s.tokens.begin(), s.tokens.end());
    if (s.hidden) keep_hidden = true;
    // Logit rows wanted: every row of the sequence, or its last one.
    if (s.logits)
      for (int r = s.all_logits ? 0 : n - 1, k = 0; r < n; ++r, ++k)
        out_rows_.push_back({s.logits + size_t(k) * hp_.n_vocab});
  }
  const int T = static_cast<int>(ids.size());
  if (T == 0) return;
  if (T > max_batch_) fail("internal error: batch of ", T, " exceeds max_batch ", max_batch_);
  const int n_out = static_cast<int>(out_rows_.size());
  const int n_head_rows = std::min(n_out, kLogitRows);  // LM-head rows computed inside the step

  // A step of one sequence on one backend is bracketed by begin/end_forward so that the backend
  // can capture it once and replay it (CUDA Graphs); when it replays, the ops are not issued
  // again. Steps of several sequences run eagerly (their per-sequence positions differ).
  const bool single = buffers_.size() == 1;
  // (A step that keeps hidden states copies them out in the middle: eager too.)
  const bool replayable = single && rows_.size() == 1 && !keep_hidden;
  ops::Backend* out_be = devices_.output;
  BlockContext c{hp_, w_, rows_, *this, T, devices_.embed, &activations_of(devices_.embed)};
  if (!replayable || !devices_.embed->begin_forward(ids, rows_[0].pos0, n_head_rows)) {
    // x = token_embd[tokens]
    c.be->get_rows(w_.tok_embd, ids, c.a->x);
    for (int il = 0; il < hp_.n_layer; ++il) layer_(c, w_.layers[il], il);
    if (keep_hidden) {
      // hidden = RMSNorm(x) · output_norm for every row of the sequences that keep it (proj is
      // free after the last block)
      c.enter(BlockContext::Part::Output, 0);
      for (size_t i = 0; i < rows_.size(); ++i) {
        float* dst = row_steps_[i]->hidden;
        if (!dst) continue;
        float* h = c.a->proj + size_t(rows_[i].row0) * hp_.n_embd;
        c.be->rmsnorm(c.a->x + size_t(rows_[i].row0) * hp_.n_embd, w_.output_norm, h, rows_[i].n,
                      hp_.n_embd, hp_.rms_eps);
        c.be->to_host(h, dst, size_t(rows_[i].n) * hp_.n_embd * sizeof(float));
      }
    }
    if (n_out > 0) {
      // xn[j] = RMSNorm(x[r_j]) · output_norm for the rows whose logits are wanted, packed
      c.enter(BlockContext::Part::Output, 0);
      int j = 0;
      for (size_t i = 0; i < rows_.size(); ++i) {
        const SeqStep* s = row_steps_[i];
        if (!s->logits) continue;
        const int first = s->all_logits ? 0 : rows_[i].n - 1;
        const int n = rows_[i].n - first;
        c.be->rmsnorm(c.a->x + size_t(rows_[i].row0 + first) * hp_.n_embd, w_.output_norm,
                      c.a->xn + size_t(j) * hp_.n_embd, n, hp_.n_embd, hp_.rms_eps);
        j += n;
      }
      // logits = W_out · xn   (the first kLogitRows rows; the rest below)
      c.be->matmul(w_.output, c.a->xn, c.a->logits, n_head_rows);
    }
  }
  if (replayable) devices_.embed->end_forward();
  if (n_out == 0) return;
  Activations& oa = activations_of(out_be);
  copy_logits(out_be, oa.logits, 0, n_head_rows);
  // Further rows in chunks of kLogitRows: a whole batch of logits ([512][152k] floats) would be
  // 300 MB of activation memory.
  for (int r0 = n_head_rows; r0 < n_out; r0 += kLogitRows) {
    const int n = std::min(kLogitRows, n_out - r0);
    out_be->matmul(w_.output, oa.xn + size_t(r0) * hp_.n_embd, oa.logits, n);
    copy_logits(out_be, oa.logits, r0, n);
  }
}

void Transformer::forward_mtp(const MtpStep& s) {
  const int T = static_cast<int>(s.tokens.size());
  if (T == 0) return;
  if (T > max_batch_) fail("internal error: MTP batch of ", T, " exceeds max_batch ", max_batch_);
  if (!mtp_ || size_t(s.block) >= w_.mtp.size())
    fail("internal error: MTP step without a bound MTP block");
  if (s.pos0 + T > s.kv->n_ctx())
    fail("the context is full: the MTP block's ", s.pos0 + T, " positions exceed ", s.kv->n_ctx());
  const MtpWeights& m = w_.mtp[size_t(s.block)];
  const SeqRows row{0, T, s.pos0, s.kv, nullptr, -1};
  BlockContext c{
      hp_, w_, std::span(&row, 1), *this, T, devices_.embed, &activations_of(devices_.embed)};
  const size_t E = size_t(hp_.n_embd);
  // x = embed[t_{i+1}] (the table stays where token_embd is); h to the output backend, in proj
  c.be->get_rows(m.embed, s.tokens, c.a->x);
  c.enter(BlockContext::Part::Output, 0);
  c.be->from_host(s.hidden, c.a->proj, size_t(T) * E * sizeof(float));
  // x = MTP block(x, h)   (the architecture's: eh_proj, then a decoder block)
  const int il = hp_.n_layer + s.block;
  mtp_(c, m, il, c.a->proj);
  c.enter(BlockContext::Part::Output, 0);
  // h' = RMSNorm(x_last) · shared_head_norm;  logits = W_head · h'
  const float* last = c.a->x + size_t(T - 1) * E;
  c.be->rmsnorm(last, m.shared_head_norm, c.a->xn, 1, hp_.n_embd, hp_.rms_eps);
  if (s.hidden_out) c.be->to_host(c.a->xn, s.hidden_out, E * sizeof(float));
  if (s.logits) {
    c.be->matmul(m.head, c.a->xn, c.a->logits, 1);
    c.be->to_host(c.a->logits, s.logits, size_t(hp_.n_vocab) * sizeof(float));
  }
}

void Transformer::copy_logits(ops::Backend* be, const float* src, int r0, int n) {
  // One copy per run of rows whose host destinations are consecutive (a sequence's rows).
  const size_t row = size_t(hp_.n_vocab);
  for (int i = 0; i < n;) {
    int j = i + 1;
    while (j < n && out_rows_[r0 + j].dst == out_rows_[r0 + j - 1].dst + row) ++j;
    be->to_host(src + size_t(i) * row, out_rows_[r0 + i].dst, size_t(j - i) * row * sizeof(float));
    i = j;
  }
}

}  // namespace straw::model
