#include "model/transformer.h"

#include <algorithm>

#include "util/str.h"

namespace straw::model {

namespace {
constexpr int kLogitRows = 64;  // LM-head rows computed per step when every token's logits are kept

size_t kv_row_bytes(const HParams& hp, ops::KvType type, int head_dim) {
  return size_t(hp.n_head_kv) * size_t(head_dim) * (type == ops::KvType::F16 ? 2 : 4);
}
}  // namespace

size_t KvCache::bytes_needed(const HParams& hp, int64_t n_ctx, ops::KvType type) {
  return size_t(n_ctx) * (kv_row_bytes(hp, type, hp.head_dim) + kv_row_bytes(hp, type, hp.head_dim_v)) *
         size_t(hp.n_layer);
}

KvCache::KvCache(const HParams& hp, int64_t n_ctx, ops::KvType type, ops::Backend& be)
    : n_ctx_(n_ctx), storage_(be.alloc(bytes_needed(hp, n_ctx, type))) {
  const size_t k_row = kv_row_bytes(hp, type, hp.head_dim);
  const size_t v_row = kv_row_bytes(hp, type, hp.head_dim_v);
  const size_t per_layer = size_t(n_ctx) * (k_row + v_row);
  layers_.resize(hp.n_layer);
  for (int i = 0; i < hp.n_layer; ++i) {
    uint8_t* base = static_cast<uint8_t*>(storage_->data()) + per_layer * i;
    layers_[i] = {type, base, base + size_t(n_ctx) * k_row, n_ctx};
  }
}

Transformer::Transformer(const HParams& hp, const Weights& w, ops::Backend& be, int max_batch)
    : hp_(hp), w_(w), be_(be), max_batch_(max_batch) {
  switch (hp.arch) {
    case Arch::Llama: layer_ = llama_layer(); break;
    case Arch::Qwen2: layer_ = qwen2_layer(); break;
    case Arch::Qwen3: layer_ = qwen3_layer(); break;
  }
  // One allocation carved into the buffers; each starts on a 64-byte boundary.
  const size_t B = size_t(max_batch);
  float** bufs[] = {&a_.x, &a_.xn, &a_.q, &a_.k, &a_.v, &a_.attn, &a_.gate, &a_.up, &a_.proj, &a_.logits};
  const size_t sizes[] = {B * hp.n_embd,
                          B * hp.n_embd,
                          B * hp.n_head * hp.head_dim,
                          B * hp.n_head_kv * hp.head_dim,
                          B * hp.n_head_kv * hp.head_dim_v,
                          B * hp.n_head * hp.head_dim_v,
                          B * hp.n_ff,
                          B * hp.n_ff,
                          B * hp.n_embd,
                          size_t(std::min(max_batch, kLogitRows)) * hp.n_vocab};
  auto padded = [](size_t n) { return (n + 15) / 16 * 16; };
  size_t total = 0;
  for (size_t n : sizes) total += padded(n);
  storage_ = be.alloc(total * sizeof(float));
  float* p = static_cast<float*>(storage_->data());
  for (size_t i = 0; i < std::size(sizes); ++i) {
    *bufs[i] = p;
    p += padded(sizes[i]);
  }
}

void Transformer::forward(std::span<const int32_t> tokens, int64_t pos0, KvCache& kv,
                          float* logits, bool all_logits) {
  const int T = static_cast<int>(tokens.size());
  if (T == 0) return;
  if (T > max_batch_) fail("internal error: batch of ", T, " exceeds max_batch ", max_batch_);
  if (pos0 + T > kv.n_ctx())
    fail("the context is full: ", pos0 + T, " tokens do not fit the context of ", kv.n_ctx(),
         " (use a larger --ctx, at most the model's ", hp_.n_ctx_train, ")");

  const int first = all_logits ? 0 : T - 1;  // rows whose logits are wanted
  const int n_out = logits ? T - first : 0;
  const int n_head_rows = std::min(n_out, kLogitRows);  // LM-head rows computed inside the step

  // The step from embeddings to the first chunk of logits is bracketed by begin/end_forward so
  // that a backend can capture it once and replay it (CUDA Graphs); when it replays, the ops are
  // not issued again.
  if (!be_.begin_forward(tokens, pos0, n_head_rows)) {
    // x = token_embd[tokens]
    be_.get_rows(w_.tok_embd, tokens, a_.x);
    BlockContext c{hp_, be_, a_, kv, w_, T, pos0};
    for (int il = 0; il < hp_.n_layer; ++il) layer_(c, w_.layers[il], il);
    if (n_out > 0) {
      // logits = W_out · (RMSNorm(x) · output_norm), for every token or only the last one
      const float* x_out = a_.x + size_t(first) * hp_.n_embd;
      be_.rmsnorm(x_out, w_.output_norm, a_.xn, n_out, hp_.n_embd, hp_.rms_eps);
      be_.matmul(w_.output, a_.xn, a_.logits, n_head_rows);
    }
  }
  be_.end_forward();
  if (n_out == 0) return;
  be_.to_host(a_.logits, logits, size_t(n_head_rows) * hp_.n_vocab * sizeof(float));
  // Further rows in chunks of kLogitRows: a whole batch of logits ([512][152k] floats) would be
  // 300 MB of activation memory.
  for (int r0 = n_head_rows; r0 < n_out; r0 += kLogitRows) {
    const int n = std::min(kLogitRows, n_out - r0);
    be_.matmul(w_.output, a_.xn + size_t(r0) * hp_.n_embd, a_.logits, n);
    be_.to_host(a_.logits, logits + size_t(r0) * hp_.n_vocab,
                size_t(n) * hp_.n_vocab * sizeof(float));
  }
}

}  // namespace straw::model
