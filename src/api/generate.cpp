// straw::generate: prompt evaluation, then sample -> decode until a stop condition.
#include <chrono>

#include "api/model_impl.h"
#include "model/sampler.h"
#include "util/str.h"

namespace straw {

namespace {

model::UserSampling to_user_sampling(const SamplingOptions& o) {
  model::UserSampling u;
  u.temperature = o.temperature;
  u.top_k = o.top_k;
  u.top_p = o.top_p;
  u.min_p = o.min_p;
  u.penalty_last_n = o.penalty_last_n;
  u.repeat_penalty = o.repeat_penalty;
  u.frequency_penalty = o.frequency_penalty;
  u.presence_penalty = o.presence_penalty;
  u.seed = o.seed;
  return u;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

GenerateResult generate(Session& session, std::span<const int32_t> prompt,
                        const GenerateOptions& options, const TokenCallback& on_token) {
  Model& model = session.model();
  const gguf::Reader& meta = *model.impl().reader;
  model::Sampler sampler(model::resolve_sampling(
      to_user_sampling(options.sampling),
      [&meta](std::string_view key) { return meta.find(key); }));
  // The prompt (or its tail already in the cache) feeds the repetition-penalty window.
  for (int32_t t : prompt) sampler.accept(t);

  GenerateResult result;
  result.prompt_tokens = int64_t(prompt.size());
  auto t0 = std::chrono::steady_clock::now();
  if (!prompt.empty()) session.eval(prompt);
  result.prompt_seconds = seconds_since(t0);

  model::Utf8Stream utf8;
  const model::Tokenizer& tok = *model.impl().tokenizer;
  t0 = std::chrono::steady_clock::now();
  // Every generated token is evaluated before returning, so the cache holds the prompt and all of
  // result.tokens and a caller can continue the conversation (except after a Context stop).
  for (;;) {
    if (options.n_predict >= 0 && int64_t(result.tokens.size()) >= options.n_predict) {
      result.stop = GenerateResult::Stop::Length;
      break;
    }
    const int32_t token = sampler.sample(session.logits());
    if (options.stop_at_eog && tok.is_eog(token)) {
      result.stop = GenerateResult::Stop::EndOfGeneration;
      break;
    }
    sampler.accept(token);
    result.tokens.push_back(token);
    const std::string text = utf8.push(tok.token_to_piece(token, false));
    const bool go_on = !on_token || on_token(text, token);
    if (session.n_past() >= session.n_ctx()) {
      result.stop = GenerateResult::Stop::Context;
      break;
    }
    const int32_t next[1] = {token};
    session.eval(next);
    if (!go_on) {
      result.stop = GenerateResult::Stop::Callback;
      break;
    }
  }
  if (std::string rest = utf8.flush(); !rest.empty() && on_token) on_token(rest, -1);
  result.generate_seconds = seconds_since(t0);
  return result;
}

}  // namespace straw
