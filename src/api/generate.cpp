// straw::generate: prompt evaluation, then sample -> decode until a stop condition.
#include <chrono>

#include "api/model_impl.h"
#include "model/sampler.h"
#include "util/str.h"

namespace straw {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

GenerateResult generate(Session& session, std::span<const int32_t> prompt,
                        const GenerateOptions& options, const TokenCallback& on_token) {
  Model& model = session.model();
  Sampler sampler(model, options.sampling);
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
    const int32_t token = sampler.sample(session.logits(), options.constraint);
    if (options.stop_at_eog && tok.is_eog(token)) {
      result.stop = GenerateResult::Stop::EndOfGeneration;
      break;
    }
    if (options.constraint) options.constraint->accept(token);
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
