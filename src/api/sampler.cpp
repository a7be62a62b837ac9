// straw::Sampler (the public face of model::Sampler, with constrained decoding) and
// log-probabilities.
#include <algorithm>
#include <cmath>
#include <limits>

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

}  // namespace

Sampler::Sampler(const Model& model, const SamplingOptions& options)
    : impl_(std::make_unique<Impl>(Impl{model::Sampler(model::resolve_sampling(
                                            to_user_sampling(options), model.impl().reader.get())),
                                        options.logit_bias,
                                        {},
                                        {},
                                        {}})) {
  for (const auto& [token, bias] : options.logit_bias)
    if (token < 0 || token >= model.n_vocab() || std::isnan(bias))
      fail("logit_bias: token ", token, " is not in the vocabulary (0..", model.n_vocab() - 1,
           ") or its bias is NaN");
}
Sampler::~Sampler() = default;
Sampler::Sampler(Sampler&&) noexcept = default;
Sampler& Sampler::operator=(Sampler&&) noexcept = default;

int32_t Sampler::sample(std::span<const float> logits, TokenConstraint* constraint) {
  Impl& s = *impl_;
  if (!s.bias.empty()) {
    s.biased.assign(logits.begin(), logits.end());
    for (const auto& [token, bias] : s.bias)
      if (size_t(token) < s.biased.size()) s.biased[size_t(token)] += bias;
    logits = s.biased;
  }
  const int32_t pick = s.sampler.sample(logits);
  if (!constraint || constraint->allows(pick)) return pick;
  // Drawing again from the masked distribution after a refused draw samples exactly from the
  // masked distribution: P(t) = p(t) + (1 - Z) p(t) / Z = p(t) / Z for an allowed t.
  s.allowed.assign(logits.size(), 1);
  constraint->mask(s.allowed);
  s.masked.assign(logits.begin(), logits.end());
  size_t n_allowed = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!s.allowed[i]) s.masked[i] = -std::numeric_limits<float>::infinity();
    n_allowed += s.allowed[i];
  }
  if (n_allowed == 0) fail("the constraint allows no token at all (a bug in the constraint)");
  const int32_t t = s.sampler.sample(s.masked);
  if (s.allowed[size_t(t)]) return t;
  // Every allowed token had -inf (or NaN) logits and sampling fell on a refused one: take the
  // first allowed token instead.
  return int32_t(std::find(s.allowed.begin(), s.allowed.end(), uint8_t(1)) - s.allowed.begin());
}

void Sampler::accept(int32_t token) {
  impl_->sampler.accept(token);
}
uint64_t Sampler::seed() const {
  return impl_->sampler.seed_used();
}

namespace {

// log(sum(exp(logits - max))) + max; NaN logits count as -inf.
double log_sum_exp(std::span<const float> logits) {
  float m = -std::numeric_limits<float>::infinity();
  for (float v : logits)
    if (v > m) m = v;
  if (!std::isfinite(m)) return m;
  double sum = 0;
  for (float v : logits)
    if (v == v) sum += std::exp(double(v) - m);
  return std::log(sum) + m;
}

}  // namespace

std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, int n) {
  if (n <= 0 || logits.empty()) return {};
  const double lse = log_sum_exp(logits);
  const size_t k = std::min(size_t(n), logits.size());
  std::vector<int32_t> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i);
  auto value = [&](int32_t i) {
    const float v = logits[size_t(i)];
    return v == v ? v : -std::numeric_limits<float>::infinity();
  };
  std::partial_sort(
      ids.begin(), ids.begin() + std::ptrdiff_t(k), ids.end(),
      [&](int32_t a, int32_t b) { return value(a) > value(b) || (value(a) == value(b) && a < b); });
  std::vector<TokenLogprob> out(k);
  for (size_t i = 0; i < k; ++i) out[i] = {ids[i], float(double(value(ids[i])) - lse)};
  return out;
}

float token_logprob(std::span<const float> logits, int32_t token) {
  if (token < 0 || size_t(token) >= logits.size())
    fail("token id ", token, " is outside the row of ", logits.size(), " logits");
  const float v = logits[size_t(token)];
  if (v != v) return -std::numeric_limits<float>::infinity();
  return float(double(v) - log_sum_exp(logits));
}

}  // namespace straw
