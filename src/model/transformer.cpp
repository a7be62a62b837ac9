#include "model/transformer.h"

#include <algorithm>

#include "util/str.h"

namespace straw::model {

KvCache::KvCache(const HParams& hp, int64_t n_ctx, ops::KvType type) : n_ctx_(n_ctx) {
  const size_t elem = type == ops::KvType::F16 ? 2 : 4;
  const size_t k_row = size_t(hp.n_head_kv) * hp.head_dim * elem;
  const size_t v_row = size_t(hp.n_head_kv) * hp.head_dim_v * elem;
  const size_t per_layer = size_t(n_ctx) * (k_row + v_row);
  storage_.resize(per_layer * hp.n_layer);
  layers_.resize(hp.n_layer);
  for (int i = 0; i < hp.n_layer; ++i) {
    uint8_t* base = storage_.data() + per_layer * i;
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
  const size_t B = size_t(max_batch);
  a_.x.resize(B * hp.n_embd);
  a_.xn.resize(B * hp.n_embd);
  a_.q.resize(B * hp.n_head * hp.head_dim);
  a_.k.resize(B * hp.n_head_kv * hp.head_dim);
  a_.v.resize(B * hp.n_head_kv * hp.head_dim_v);
  a_.attn.resize(B * hp.n_head * hp.head_dim_v);
  a_.gate.resize(B * hp.n_ff);
  a_.up.resize(B * hp.n_ff);
  a_.proj.resize(B * hp.n_embd);
}

void Transformer::forward(std::span<const int32_t> tokens, int64_t pos0, KvCache& kv,
                          float* logits, bool all_logits) {
  const int T = static_cast<int>(tokens.size());
  if (T == 0) return;
  if (T > max_batch_) fail("internal error: batch of ", T, " exceeds max_batch ", max_batch_);
  if (pos0 + T > kv.n_ctx())
    fail("the context is full: ", pos0 + T, " tokens do not fit the context of ", kv.n_ctx(),
         " (use a larger --ctx, at most the model's ", hp_.n_ctx_train, ")");

  // x = token_embd[tokens]
  be_.get_rows(w_.tok_embd, tokens, a_.x.data());
  BlockContext c{hp_, be_, a_, kv, w_, T, pos0};
  for (int il = 0; il < hp_.n_layer; ++il) layer_(c, w_.layers[il], il);

  if (!logits) return;
  // logits = W_out · (RMSNorm(x) · output_norm), for every token or only the last one
  const int first = all_logits ? 0 : T - 1;
  const int n_out = T - first;
  const float* x_out = a_.x.data() + size_t(first) * hp_.n_embd;
  be_.rmsnorm(x_out, w_.output_norm, a_.xn.data(), n_out, hp_.n_embd, hp_.rms_eps);
  be_.matmul(w_.output, a_.xn.data(), logits, n_out);
}

}  // namespace straw::model
