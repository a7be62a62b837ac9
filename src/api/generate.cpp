// straw::generate: prompt evaluation, then sample -> decode until a stop condition.
#include <algorithm>
#include <chrono>

#include "api/model_impl.h"
#include "model/sampler.h"
#include "util/str.h"

namespace straw {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

SpeculationStats minus(const SpeculationStats& a, const SpeculationStats& b) {
  SpeculationStats d;
  d.steps = a.steps - b.steps;
  d.proposed = a.proposed - b.proposed;
  d.checked = a.checked - b.checked;
  d.accepted = a.accepted - b.accepted;
  d.step_tokens = a.step_tokens - b.step_tokens;
  d.propose_seconds = a.propose_seconds - b.propose_seconds;
  return d;
}

}  // namespace

int shift_context(Session& session, int64_t n_tokens, int64_t n_keep) {
  if (n_keep < 0) fail("context shift: n_keep (--keep) must be >= 0, got ", n_keep);
  int shifts = 0;
  while (session.n_ctx() - session.n_past() < n_tokens) {
    const int64_t keep = std::min(n_keep, session.n_past());
    const int64_t discard = (session.n_past() - keep) / 2;
    if (discard <= 0 || n_tokens > session.n_ctx() - keep)
      fail("the context is full and a context shift cannot make room: ", n_tokens, " new tokens, ",
           keep, " kept (--keep), a context of ", session.n_ctx(),
           " (use a larger --ctx or a smaller --keep)");
    session.shift(keep, discard);
    ++shifts;
  }
  return shifts;
}

GenerateResult generate(Session& session, std::span<const int32_t> prompt,
                        const GenerateOptions& options, const TokenCallback& on_token) {
  Model& model = session.model();
  if (options.context_shift && model.impl().hp.has_recurrent())
    fail("context shift is not possible for ", model.impl().hp.arch_name,
         " models: their linear-attention layers keep a recurrent state that cannot forget "
         "tokens; use a larger --ctx without --context-shift");
  if (options.context_shift && !model.info().context_shift)
    fail("context shift runs on the CPU only so far, and this model keeps KV caches on the GPU: "
         "load it with --device cpu, or use a larger --ctx without --context-shift");
  Sampler sampler(model, options.sampling);
  // The prompt (or its tail already in the cache) feeds the repetition-penalty window.
  for (int32_t t : prompt) sampler.accept(t);
  Speculator* spec = options.speculator;
  if (spec) spec->attach(session);  // Mtp: keep the hidden states of the prompt's positions too
  const SpeculationStats stats_before = spec ? spec->stats() : SpeculationStats{};

  GenerateResult result;
  result.prompt_tokens = int64_t(prompt.size());
  auto t0 = std::chrono::steady_clock::now();
  if (options.context_shift && !prompt.empty())
    result.context_shifts += shift_context(session, int64_t(prompt.size()), options.n_keep);
  if (!prompt.empty()) session.eval(prompt);
  result.prompt_seconds = seconds_since(t0);

  model::Utf8Stream utf8;
  const model::Tokenizer& tok = *model.impl().tokenizer;
  t0 = std::chrono::steady_clock::now();
  // The latest evaluation: `last` then `proposals` (speculation), whose rows of logits are read
  // one by one; `row` is the next one. Without proposals only the last row is kept.
  std::vector<int32_t> batch;      // last + proposals
  std::vector<int32_t> proposals;  // copy: the speculator's span changes at its next propose()
  std::vector<int32_t> sequence;   // speculation: the cache's tokens + the token to evaluate
  size_t row = 0;
  // The tokens of the latest evaluation that turned out wrong (rejected proposals, and those after
  // the row where generation stopped) leave the cache, which then holds the prompt and every
  // generated token (each is evaluated before returning, except after a Context stop).
  auto drop_unused_rows = [&] {
    const size_t unused = proposals.size() - std::min(row, proposals.size());
    if (unused > 0) session.truncate(session.n_past() - int64_t(unused));
    proposals.clear();
    if (spec) spec->finish_step();
  };
  for (;;) {
    if (options.n_predict >= 0 && int64_t(result.tokens.size()) >= options.n_predict) {
      result.stop = GenerateResult::Stop::Length;
      break;
    }
    const std::span<const float> logits =
        proposals.empty() ? session.logits() : session.logits(int(row));
    const int32_t token = spec ? spec->pick(sampler, logits, row, options.constraint)
                               : sampler.sample(logits, options.constraint);
    if (options.stop_at_eog && tok.is_eog(token)) {
      result.stop = GenerateResult::Stop::EndOfGeneration;
      break;
    }
    if (options.constraint) options.constraint->accept(token);
    sampler.accept(token);
    result.tokens.push_back(token);
    const std::string text = utf8.push(tok.token_to_piece(token, false));
    const bool go_on = !on_token || on_token(text, token);
    if (row < proposals.size() && token == proposals[row]) {
      // An accepted proposal: already evaluated (its row is the next one).
      ++row;
      if (!go_on) {
        result.stop = GenerateResult::Stop::Callback;
        break;
      }
      continue;
    }
    // The target's own token: the proposals after it are rejected.
    drop_unused_rows();
    if (session.n_past() >= session.n_ctx()) {
      if (!options.context_shift) {
        result.stop = GenerateResult::Stop::Context;
        break;
      }
      result.context_shifts += shift_context(session, 1, options.n_keep);
    }
    batch.assign(1, token);
    if (spec && go_on) {
      const std::span<const int32_t> cached = session.tokens();
      sequence.assign(cached.begin(), cached.end());
      sequence.push_back(token);
      // Proposals fit in the context after the token, and beyond the tokens still wanted they
      // would be wasted.
      int64_t room = session.n_ctx() - session.n_past() - 1;
      if (options.n_predict >= 0)
        room = std::min<int64_t>(room, options.n_predict - int64_t(result.tokens.size()));
      const std::span<const int32_t> p =
          spec->propose(sequence, sampler, int(std::max<int64_t>(room, 0)));
      proposals.assign(p.begin(), p.end());
      batch.insert(batch.end(), proposals.begin(), proposals.end());
    }
    const auto ts = std::chrono::steady_clock::now();
    session.eval(batch, !proposals.empty());
    if (spec) spec->record_target_step(int(batch.size()), seconds_since(ts));
    ++result.decode_steps;
    row = 0;
    if (!go_on) {
      result.stop = GenerateResult::Stop::Callback;
      break;
    }
  }
  drop_unused_rows();
  if (std::string rest = utf8.flush(); !rest.empty() && on_token) on_token(rest, -1);
  result.generate_seconds = seconds_since(t0);
  if (spec) result.speculation = minus(spec->stats(), stats_before);
  return result;
}

}  // namespace straw
