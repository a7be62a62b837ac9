// straw::Session: a KV cache plus the logits of the last evaluation.
#include <algorithm>

#include "api/model_impl.h"
#include "util/str.h"

namespace straw {

struct Session::Impl {
  Model& model;
  model::KvCache kv;
  model::Transformer transformer;
  std::vector<float> logits;  // [n_rows][n_vocab] of the last eval
  int64_t n_rows = 0;         // rows held in `logits`
  int64_t n_past = 0;

  Impl(Model& m, int64_t n_ctx)
      : model(m),
        kv(m.impl().hp, n_ctx, kv_type(m.impl().options.kv_type), m.impl().devices),
        transformer(m.impl().hp, m.impl().weights, m.impl().devices,
                    static_cast<int>(std::min<int64_t>(m.impl().options.ubatch, n_ctx))) {}
};

Session::Session(Model& model, int64_t ctx) {
  const int64_t n_ctx = ctx > 0 ? ctx : model.impl().n_ctx;
  if (n_ctx > model.impl().hp.n_ctx_train)
    fail("the context length ", n_ctx, " exceeds the model's trained context of ",
         model.impl().hp.n_ctx_train, " tokens");
  impl_ = std::make_unique<Impl>(model, n_ctx);
}
Session::~Session() = default;

void Session::eval(std::span<const int32_t> tokens, bool all_logits) {
  Impl& s = *impl_;
  const int64_t n_vocab = s.model.n_vocab();
  if (tokens.empty()) fail("eval needs at least one token");
  if (s.n_past + int64_t(tokens.size()) > s.kv.n_ctx())
    fail("the context is full: ", s.n_past, " tokens in the cache + ", tokens.size(),
         " new ones exceed the context of ", s.kv.n_ctx(), " (use a larger --ctx)");
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= n_vocab)
      fail("token id ", tokens[i], " at index ", i, " is outside the vocabulary (0..", n_vocab - 1,
           ")");

  s.n_rows = all_logits ? int64_t(tokens.size()) : 1;
  s.logits.resize(size_t(s.n_rows * n_vocab));
  const int ub = s.transformer.max_batch();
  for (size_t done = 0; done < tokens.size();) {
    const size_t n = std::min<size_t>(ub, tokens.size() - done);
    const bool last = done + n == tokens.size();
    // Without all_logits only the final micro-batch computes logits, and only for its last token.
    float* out = all_logits ? s.logits.data() + done * n_vocab : last ? s.logits.data() : nullptr;
    s.transformer.forward(tokens.subspan(done, n), s.n_past, s.kv, out, all_logits);
    s.n_past += int64_t(n);
    done += n;
  }
}

std::span<const float> Session::logits(int i) const {
  const Impl& s = *impl_;
  const int64_t n_vocab = s.model.n_vocab();
  if (s.n_rows == 0) fail("no logits yet: call eval() first");
  const int64_t row = i < 0 ? s.n_rows - 1 : i;
  if (row >= s.n_rows)
    fail("logits of token ", i, " were not kept (eval with all_logits to keep every position)");
  return {s.logits.data() + row * n_vocab, size_t(n_vocab)};
}

int64_t Session::n_past() const {
  return impl_->n_past;
}
int64_t Session::n_ctx() const {
  return impl_->kv.n_ctx();
}
void Session::reset() {
  impl_->n_past = 0;
  impl_->n_rows = 0;
}

void Session::truncate(int64_t n_keep) {
  if (n_keep < 0 || n_keep > impl_->n_past)
    fail("truncate(", n_keep, "): the session holds ", impl_->n_past, " tokens");
  // Attention reads cache rows 0..position only, so the rows past n_keep need no clearing: the
  // next eval overwrites them. The last eval's logits belong to forgotten tokens unless n_keep
  // is n_past.
  if (n_keep < impl_->n_past) impl_->n_rows = 0;
  impl_->n_past = n_keep;
}
Model& Session::model() const {
  return impl_->model;
}

}  // namespace straw
