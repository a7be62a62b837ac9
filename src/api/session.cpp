// straw::Session (a KV cache, for models with linear-attention layers a recurrent state, the tokens
// it holds and the logits of the last evaluation) and straw::eval_batch, which evaluates several
// sessions in shared forward steps.
#include <algorithm>
#include <set>

#include "api/model_impl.h"
#include "util/str.h"

namespace straw {

struct Session::Impl {
  Model& model;
  model::KvCache kv;
  model::RecurrentState rs;     // empty unless the model has linear-attention layers
  std::vector<int32_t> tokens;  // what the cache holds, position by position
  std::vector<float> logits;    // [n_rows][n_vocab] of the last eval
  int64_t n_rows = 0;           // rows held in `logits`
  int64_t row0_pos = 0;         // the position of the token whose logits are row 0
  // The MTP proposer's input (SessionInternals): every evaluated token's output-normed hidden
  // state, [n][n_embd] for positions hidden_pos0.., until the proposer has read it.
  bool keep_hidden = false;
  std::vector<float> hidden;
  int64_t hidden_pos0 = 0;
  int64_t hidden_rows() const { return int64_t(hidden.size()) / model.impl().hp.n_embd; }
  void clear_hidden(int64_t pos0) {
    hidden.clear();
    hidden_pos0 = pos0;
  }

  Impl(Model& m, int64_t n_ctx)
      : model(m),
        kv(m.impl().hp, n_ctx, kv_type(m.impl().options.kv_type_k),
           kv_type(m.impl().options.kv_type_v), m.impl().devices),
        rs(m.impl().hp, m.impl().devices) {}

  model::RecurrentState* state() { return rs.empty() ? nullptr : &rs; }

  // Evaluates tokens after the ones held, without logits (rebuilding the recurrent state).
  void advance(std::span<const int32_t> t) {
    model::Transformer& tf = model.impl().transformer();
    for (size_t done = 0; done < t.size();) {
      const size_t n = std::min<size_t>(size_t(tf.max_batch()), t.size() - done);
      tf.forward(t.subspan(done, n), int64_t(tokens.size()), kv, nullptr, false, state());
      tokens.insert(tokens.end(), t.begin() + done, t.begin() + done + n);
      done += n;
    }
  }
};

model::Transformer& Model::Impl::transformer() {
  // One set of activation buffers per model, shared by its sessions (they never evaluate
  // concurrently), sized for one micro-batch.
  if (!exec) exec = std::make_unique<model::Transformer>(hp, weights, devices, options.ubatch);
  return *exec;
}

Session::Session(Model& model, int64_t ctx) {
  const int64_t n_ctx = ctx > 0 ? ctx : model.impl().n_ctx;
  if (n_ctx > model.impl().hp.n_ctx_max())
    fail("the context length ", n_ctx, " exceeds the model's trained context of ",
         model.impl().hp.n_ctx_max(), " tokens");
  impl_ = std::make_unique<Impl>(model, n_ctx);
}
Session::~Session() = default;

void Session::eval(std::span<const int32_t> tokens, bool all_logits) {
  if (tokens.empty()) fail("eval needs at least one token");
  const BatchItem item{this, tokens, all_logits};
  eval_batch(std::span(&item, 1));
}

void eval_batch(std::span<const BatchItem> items) {
  if (items.empty()) return;
  for (size_t i = 0; i < items.size(); ++i)
    if (!items[i].session) fail("eval_batch: item ", i, " has no session");
  Model& model = items[0].session->model();
  std::set<const Session*> seen;
  for (size_t i = 0; i < items.size(); ++i) {
    const BatchItem& it = items[i];
    Session::Impl& s = *it.session->impl_;
    if (&s.model != &model) fail("eval_batch: the sessions belong to different models");
    if (!seen.insert(it.session).second) fail("eval_batch: a session appears twice (item ", i, ")");
    if (it.tokens.empty()) fail("eval needs at least one token (batch item ", i, ")");
    const int64_t n_past = int64_t(s.tokens.size());
    if (n_past + int64_t(it.tokens.size()) > s.kv.n_ctx())
      fail("the context is full: ", n_past, " tokens in the cache + ", it.tokens.size(),
           " new ones exceed the context of ", s.kv.n_ctx(),
           " (use a larger --ctx, or --context-shift to drop old tokens)");
    const int64_t n_vocab = model.n_vocab();
    for (size_t t = 0; t < it.tokens.size(); ++t)
      if (it.tokens[t] < 0 || it.tokens[t] >= n_vocab)
        fail("token id ", it.tokens[t], " at index ", t, " is outside the vocabulary (0..",
             n_vocab - 1, ")");
  }

  const EvaluationGuard guard(
      model.impl(),
      "two evaluations of one model overlap: sessions of a model must not evaluate concurrently "
      "(serialize the calls, or load the model once per thread)");

  const int64_t n_vocab = model.n_vocab();
  for (const BatchItem& it : items) {
    Session::Impl& s = *it.session->impl_;
    s.n_rows = it.all_logits ? int64_t(it.tokens.size()) : 1;
    s.row0_pos = int64_t(s.tokens.size()) + int64_t(it.tokens.size()) - s.n_rows;
    s.logits.resize(size_t(s.n_rows * n_vocab));
    if (s.keep_hidden) {
      // Rows continue the kept ones when the positions follow on; otherwise they start afresh.
      const int64_t n_past = int64_t(s.tokens.size());
      if (s.hidden_pos0 + s.hidden_rows() != n_past) s.clear_hidden(n_past);
      s.hidden.resize(s.hidden.size() + it.tokens.size() * size_t(model.impl().hp.n_embd));
    }
  }
  // Steps of at most max_batch tokens, filled item by item; an item longer than the room left
  // continues in the next step. Without all_logits an item's logits come from its last token only.
  model::Transformer& tf = model.impl().transformer();
  std::vector<size_t> done(items.size(), 0);
  std::vector<model::SeqStep> step;
  for (;;) {
    step.clear();
    int room = tf.max_batch();
    for (size_t i = 0; i < items.size() && room > 0; ++i) {
      const BatchItem& it = items[i];
      Session::Impl& s = *it.session->impl_;
      const size_t n = std::min<size_t>(size_t(room), it.tokens.size() - done[i]);
      if (n == 0) continue;
      const bool last = done[i] + n == it.tokens.size();
      float* out = it.all_logits ? s.logits.data() + done[i] * n_vocab
                   : last        ? s.logits.data()
                                 : nullptr;
      step.push_back({it.tokens.subspan(done[i], n), int64_t(s.tokens.size()), &s.kv, out,
                      it.all_logits, s.state()});
      if (s.keep_hidden)
        step.back().hidden = s.hidden.data() + size_t(int64_t(s.tokens.size()) - s.hidden_pos0) *
                                                   size_t(model.impl().hp.n_embd);
      // The recurrent state after the next-to-last token of a prompt is kept too (see below).
      const size_t before_last = it.tokens.size() - 2;
      if (s.state() && it.tokens.size() > 1 && before_last >= done[i] && before_last < done[i] + n)
        step.back().snapshot_after = int(before_last - done[i]);
      room -= int(n);
    }
    if (step.empty()) break;
    tf.forward(step);
    // The step's tokens are in the caches now.
    for (size_t i = 0, j = 0; i < items.size() && j < step.size(); ++i) {
      Session::Impl& s = *items[i].session->impl_;
      if (step[j].kv != &s.kv) continue;
      s.tokens.insert(s.tokens.end(), step[j].tokens.begin(), step[j].tokens.end());
      done[i] += step[j].tokens.size();
      ++j;
    }
  }
  // The end of a prompt (more than one token) is where a conversation comes back to: regenerate,
  // edit the last message, benchmark repetitions; a server evaluates a cached prompt's last token
  // again for its logits. Keep the recurrent state at both places (the one before the last token
  // from the snapshot taken inside the step).
  for (const BatchItem& it : items)
    if (it.tokens.size() > 1 && it.session->impl_->state()) {
      Session::Impl& s = *it.session->impl_;
      s.rs.save(int64_t(s.tokens.size()) - 1, /*from_snapshot=*/true);
      s.rs.save(int64_t(s.tokens.size()));
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
  return int64_t(impl_->tokens.size());
}
int64_t Session::n_ctx() const {
  return impl_->kv.n_ctx();
}
std::span<const int32_t> Session::tokens() const {
  return impl_->tokens;
}

int64_t Session::common_prefix(std::span<const int32_t> prompt) const {
  const std::vector<int32_t>& t = impl_->tokens;
  const size_t n = std::min(t.size(), prompt.size());
  return int64_t(std::mismatch(t.begin(), t.begin() + n, prompt.begin()).first - t.begin());
}

void Session::reset() {
  impl_->tokens.clear();
  impl_->n_rows = 0;
  impl_->clear_hidden(0);
  if (!impl_->rs.empty()) impl_->rs.clear();
}

void Session::truncate(int64_t n_keep) {
  if (n_keep < 0 || n_keep > n_past())
    fail("truncate(", n_keep, "): the session holds ", n_past(), " tokens");
  // Attention reads cache rows 0..position only, so the rows past n_keep need no clearing: the
  // next eval overwrites them. The last eval's logits rows of forgotten tokens go; when it kept
  // the row of the new last token (all_logits, speculative verification), logits() is that row.
  Impl& s = *impl_;
  if (n_keep == n_past()) return;
  if (n_keep <= s.hidden_pos0)
    s.clear_hidden(n_keep);
  else if (n_keep < s.hidden_pos0 + s.hidden_rows())
    s.hidden.resize(size_t(n_keep - s.hidden_pos0) * size_t(s.model.impl().hp.n_embd));
  const int64_t last = n_keep - 1;
  s.n_rows = last >= s.row0_pos && last < s.row0_pos + s.n_rows ? last - s.row0_pos + 1 : 0;
  if (s.rs.empty()) {
    s.tokens.resize(size_t(n_keep));
    return;
  }
  // The recurrent state cannot be rewound: restore the latest checkpoint at or before n_keep and
  // evaluate the tokens from there to n_keep again (their KV rows are rewritten unchanged; the
  // logits rows are not touched). A checkpoint at n_keep then bounds the next rollback's work
  // (speculative decoding truncates after every verification with a rejection).
  const int64_t from = s.rs.restore(n_keep);
  if (from == n_keep) {
    s.tokens.resize(size_t(n_keep));
    return;
  }
  const std::vector<int32_t> redo(s.tokens.begin() + from, s.tokens.begin() + n_keep);
  s.tokens.resize(size_t(from));
  s.advance(redo);
  s.rs.save(n_keep);
}

void Session::shift(int64_t n_keep, int64_t n_discard) {
  Impl& s = *impl_;
  if (n_keep < 0 || n_discard <= 0 || n_keep + n_discard > n_past())
    fail("shift(", n_keep, ", ", n_discard, "): the session holds ", n_past(),
         " tokens (keep 0 or more, drop 1 or more, within them)");
  const Model::Impl& m = s.model.impl();
  if (!m.info.context_shift && !m.hp.has_recurrent())
    fail("context shift runs on the CPU only so far, and this model keeps KV caches on the GPU: "
         "load it with --device cpu, or use a larger --ctx without --context-shift");
  const int64_t src = n_keep + n_discard;
  s.model.impl().transformer().shift(s.kv, n_keep, n_discard, n_past());
  s.tokens.erase(s.tokens.begin() + n_keep, s.tokens.begin() + src);
  s.clear_hidden(n_past());
  // Logits rows of positions [n_keep, src) go; the rows before and after end up adjacent.
  const int64_t first = std::clamp(n_keep - s.row0_pos, int64_t(0), s.n_rows);
  const int64_t last = std::clamp(src - s.row0_pos, int64_t(0), s.n_rows);
  const int64_t n_vocab = s.model.n_vocab();
  if (last > first) {
    s.logits.erase(s.logits.begin() + first * n_vocab, s.logits.begin() + last * n_vocab);
    s.n_rows -= last - first;
  }
  if (s.row0_pos >= src)
    s.row0_pos -= n_discard;
  else if (s.row0_pos >= n_keep)
    s.row0_pos = n_keep;
}

Model& Session::model() const {
  return impl_->model;
}

void SessionInternals::keep_hidden(Session& s) {
  Session::Impl& m = *s.impl_;
  if (!m.keep_hidden) m.clear_hidden(int64_t(m.tokens.size()));
  m.keep_hidden = true;
}

SessionInternals::Hidden SessionInternals::hidden(const Session& s) {
  const Session::Impl& m = *s.impl_;
  return {m.hidden.data(), m.hidden_pos0, m.hidden_rows()};
}

void SessionInternals::drop_hidden_before(Session& s, int64_t pos) {
  Session::Impl& m = *s.impl_;
  const int64_t n = std::clamp(pos - m.hidden_pos0, int64_t(0), m.hidden_rows());
  if (n == 0) return;
  m.hidden.erase(m.hidden.begin(), m.hidden.begin() + n * m.model.impl().hp.n_embd);
  m.hidden_pos0 += n;
}

}  // namespace straw
