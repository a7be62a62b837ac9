// straw::Speculator: the proposers of speculative decoding (a draft model, prompt lookup) and the
// choice of verified tokens (model/speculative.h), with the draft-length controller and cost model
// of sched/speculation.h.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "api/model_impl.h"
#include "model/speculative.h"
#include "sched/speculation.h"
#include "util/str.h"

namespace straw {

namespace {

// llama.cpp tolerates this many extra (padding) entries in one of the two vocabularies.
constexpr int64_t kMaxVocabDifference = 128;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A draft model must speak the target's vocabulary token for token; says what differs otherwise.
void check_same_vocabulary(const Model& target, const Model& draft) {
  const model::Tokenizer& a = *target.impl().tokenizer;
  const model::Tokenizer& b = *draft.impl().tokenizer;
  const std::string names =
      str(" (target ", target.impl().options.path, ", draft ", draft.impl().options.path, ")");
  const auto advice =
      "; a draft model must use the target's tokenizer, e.g. a smaller model of the same family "
      "(Qwen2.5-0.5B for Qwen2.5-7B)";
  const int64_t na = a.n_vocab(), nb = b.n_vocab();
  if (std::llabs(na - nb) > kMaxVocabDifference)
    fail("the draft model's vocabulary has ", nb, " tokens and the target's ", na, names, advice);
  const int32_t n = int32_t(std::min(na, nb));
  for (int32_t id = 0; id < n; ++id)
    if (a.token_text(id) != b.token_text(id))
      fail("token ", id, " is \"", a.token_text(id), "\" in the target's vocabulary but \"",
           b.token_text(id), "\" in the draft model's", names, advice);
  if (a.bos() != b.bos() || a.eos() != b.eos())
    fail("the draft model's special tokens differ from the target's: BOS ", b.bos(), " / EOS ",
         b.eos(), " against ", a.bos(), " / ", a.eos(), names, advice);
}

void check_options(const SpeculativeOptions& o) {
  if (o.draft_max < 0 || o.draft_max > 256)
    fail("draft_max (--draft-max) must be 0..256, got ", o.draft_max);
  if (o.draft_min < 0 || o.draft_min > o.draft_max)
    fail("draft_min (--draft-min) must be 0..draft_max (", o.draft_max, "), got ", o.draft_min);
  if (!(o.draft_p_min >= 0.0f && o.draft_p_min <= 1.0f))
    fail("draft_p_min (--draft-p-min) must be in [0, 1], got ", o.draft_p_min);
  if (o.ngram_size < 1 || o.ngram_size > 64)
    fail("ngram_size (--spec-ngram-size) must be 1..64, got ", o.ngram_size);
  if (o.method == SpecMethod::Draft && !o.draft_model)
    fail("speculation with a draft model needs the draft model (--model-draft FILE)");
}

// Probability of `token` under the softmax of a row (the draft's confidence, for draft_p_min).
double softmax_prob(std::span<const float> logits, int32_t token) {
  float m = -std::numeric_limits<float>::infinity();
  for (float v : logits) m = std::max(m, v);
  double sum = 0;
  for (float v : logits) sum += std::exp(double(v) - m);
  return std::exp(double(logits[size_t(token)]) - m) / sum;
}

}  // namespace

struct Speculator::Impl {
  Model& target;
  SpeculativeOptions o;
  std::unique_ptr<Session> draft;  // Draft: the draft model's cache of the sequence
  sched::DraftController ctl;

  // Cost model: the planner's predictions, replaced by measurements as they come.
  sched::SpecCost predicted;
  std::vector<double> measured;  // measured[n - 1]: EMA of a target step over n tokens; 0: none
  double scale = 1.0;            // measured / predicted, EMA over all target measurements
  bool scaled = false;           // `scale` holds a measurement
  double draft_measured = 0;     // EMA of the draft's seconds per proposed token; 0: none

  // The draft's sampler (temperature > 0, or penalties): the target sampler's settings.
  std::optional<model::Sampler> draft_sampler;
  model::SamplingParams draft_params;

  // The current step.
  std::vector<int32_t> proposals;
  std::vector<std::vector<model::TokenProb>> q;  // Draft sampling: each proposal's distribution
  int picks = 0, checked = 0, accepted = 0;
  bool open = false;  // propose() returned proposals that finish_step() has not closed

  SpeculationStats stats;
  std::vector<float> scratch;  // speculative sampling's q row

  Impl(Model& t, const SpeculativeOptions& opt)
      : target(t),
        o(opt),
        ctl(opt.draft_min, opt.draft_max, opt.adaptive,
            opt.method == SpecMethod::Ngram ? 0.5 : 0.6) {}

  sched::SpecCost cost() const {
    sched::SpecCost c = predicted;
    for (size_t n = 0; n < c.target.size(); ++n)
      c.target[n] = measured[n] > 0 ? measured[n] : predicted.target[n] * scale;
    c.draft_token = draft_measured > 0 ? draft_measured : predicted.draft_token * scale;
    return c;
  }

  void propose_draft(std::span<const int32_t> sequence, const model::Sampler& target_sampler,
                     int k);
  void propose_ngram(std::span<const int32_t> sequence, int k);
};

Speculator::Speculator(Model& target, const SpeculativeOptions& options, int64_t ctx) {
  check_options(options);
  impl_ = std::make_unique<Impl>(target, options);
  Impl& s = *impl_;
  const sched::Plan* draft_plan = nullptr;
  if (options.method == SpecMethod::Draft) {
    Model& d = *options.draft_model;
    if (&d == &target)
      fail(
          "the draft model is the target model itself: load the file a second time to use a "
          "model as its own draft (each model evaluates one thing at a time)");
    check_same_vocabulary(target, d);
    const int64_t want = ctx > 0 ? ctx : target.impl().n_ctx;
    s.draft = std::make_unique<Session>(d, std::min(want, d.impl().hp.n_ctx_max()));
    draft_plan = &d.impl().plan;
  }
  s.predicted = sched::predicted_cost(target.impl().plan, draft_plan, options.draft_max + 1);
  s.measured.assign(s.predicted.target.size(), 0.0);
}

Speculator::~Speculator() = default;
Speculator::Speculator(Speculator&&) noexcept = default;
Speculator& Speculator::operator=(Speculator&&) noexcept = default;

const SpeculationStats& Speculator::stats() const {
  return impl_->stats;
}
const SpeculativeOptions& Speculator::options() const {
  return impl_->o;
}
double Speculator::acceptance_estimate() const {
  return impl_->ctl.acceptance();
}

std::span<const int32_t> Speculator::propose(std::span<const int32_t> sequence,
                                             const Sampler& sampler, int max_tokens) {
  Impl& s = *impl_;
  if (s.open) finish_step();
  s.proposals.clear();
  s.q.clear();
  if (s.o.method == SpecMethod::None || sequence.empty()) return {};
  const int k = std::min(s.ctl.next(s.cost()), max_tokens);
  if (k <= 0 || k < s.o.draft_min) return {};
  const auto t0 = std::chrono::steady_clock::now();
  if (s.o.method == SpecMethod::Draft)
    s.propose_draft(sequence, sampler.impl_->sampler, k);
  else
    s.propose_ngram(sequence, k);
  if (int(s.proposals.size()) < std::max(1, s.o.draft_min)) {
    s.proposals.clear();
    s.q.clear();
  }
  s.stats.propose_seconds += seconds_since(t0);
  if (s.proposals.empty()) return {};
  s.open = true;
  s.picks = s.checked = s.accepted = 0;
  ++s.stats.steps;
  s.stats.proposed += int64_t(s.proposals.size());
  return s.proposals;
}

void Speculator::Impl::propose_ngram(std::span<const int32_t> sequence, int k) {
  proposals = model::ngram_lookup(sequence, o.ngram_size, k);
}

void Speculator::Impl::propose_draft(std::span<const int32_t> sequence,
                                     const model::Sampler& target_sampler, int k) {
  const auto t0 = std::chrono::steady_clock::now();
  Session& d = *draft;
  const int64_t n = int64_t(sequence.size());
  // Room in the draft's context: it evaluates the sequence and all proposals but the last.
  k = int(std::min<int64_t>(k, d.n_ctx() - n + 1));
  if (k <= 0) return;
  // Bring the draft's cache to the sequence: keep the common prefix (the accepted tokens of the
  // last step stay), evaluate the rest; at least the last token, whose logits give proposal 0.
  const int64_t keep = std::min(d.common_prefix(sequence), n - 1);
  d.truncate(keep);
  d.eval(sequence.subspan(size_t(keep)));
  int evals = 1;

  // The draft samples with the target's settings (temperature > 0: proposals drawn from q, its
  // distribution; greedy: its argmax, with the same penalties). Its generator is its own (seeded
  // from the target's seed), so proposals are independent of the target's draws.
  const model::SamplingParams& tp = target_sampler.params();
  const bool same = draft_sampler && draft_params.temperature == tp.temperature &&
                    draft_params.top_k == tp.top_k && draft_params.top_p == tp.top_p &&
                    draft_params.min_p == tp.min_p && draft_params.min_keep == tp.min_keep &&
                    draft_params.penalty_last_n == tp.penalty_last_n &&
                    draft_params.repeat_penalty == tp.repeat_penalty &&
                    draft_params.frequency_penalty == tp.frequency_penalty &&
                    draft_params.presence_penalty == tp.presence_penalty;
  if (!same) {
    draft_params = tp;
    model::SamplingParams p = tp;
    p.seed = (target_sampler.seed_used() * 0x9E3779B97F4A7C15ull + 1) & 0xFFFFFFFFull;
    if (p.seed == model::kRandomSeed) p.seed = 0;
    draft_sampler.emplace(p);
  }
  model::Sampler& ds = *draft_sampler;
  if (ds.has_penalties()) {
    ds.clear_history();
    const int64_t w = tp.penalty_last_n < 0 ? n : std::min<int64_t>(n, tp.penalty_last_n);
    for (int64_t i = n - w; i < n; ++i) ds.accept(sequence[size_t(i)]);
  }
  const bool sampling = tp.temperature > 0.0f;
  const int64_t n_vocab_target = target.n_vocab();
  for (int j = 0; j < k; ++j) {
    const std::span<const float> logits = d.logits();
    int32_t tok;
    double confidence;
    if (sampling) {
      const std::span<const model::TokenProb> dist = ds.distribution(logits);
      std::vector<model::TokenProb> qj(dist.begin(), dist.end());
      tok = ds.draw(qj);
      confidence = 0;
      for (const model::TokenProb& t : qj) confidence = std::max(confidence, double(t.p));
      q.push_back(std::move(qj));
    } else {
      tok = ds.sample(logits);
      confidence = softmax_prob(logits, tok);
    }
    // Only confident proposals (llama.cpp's p_min); never a token outside the target's vocabulary
    // (padding entries of a larger draft vocabulary).
    if (confidence < o.draft_p_min || tok >= n_vocab_target) {
      if (sampling) q.pop_back();
      break;
    }
    proposals.push_back(tok);
    ds.accept(tok);
    if (j + 1 == k) break;
    const int32_t one[1] = {tok};
    d.eval(one);
    ++evals;
  }
  // The draft's time per evaluation (its cost per proposed token in the model).
  const double per_eval = seconds_since(t0) / evals;
  draft_measured = draft_measured > 0 ? 0.8 * draft_measured + 0.2 * per_eval : per_eval;
}

int32_t Speculator::pick(Sampler& sampler, std::span<const float> logits, size_t i,
                         TokenConstraint* constraint) {
  Impl& s = *impl_;
  if (!s.open || i >= s.proposals.size()) {
    // The target's own token after the last proposal (or a plain decode step).
    if (s.open) ++s.picks;
    return sampler.sample(logits, constraint);
  }
  const int32_t x = s.proposals[i];
  int32_t y;
  if (!constraint && i < s.q.size()) {
    // A proposal drawn from the draft's distribution: speculative sampling.
    y = model::verify_with_distribution(sampler.impl_->sampler, logits, x, s.q[i], s.scratch);
  } else {
    // A deterministic proposal (or a constraint to respect): draw from the target, compare.
    y = sampler.sample(logits, constraint);
  }
  ++s.picks;
  ++s.checked;
  if (y == x) ++s.accepted;
  return y;
}

void Speculator::finish_step() {
  Impl& s = *impl_;
  if (!s.open) return;
  s.open = false;
  s.ctl.observe(s.checked, s.accepted);
  s.stats.checked += s.checked;
  s.stats.accepted += s.accepted;
  s.stats.step_tokens += s.picks;
  s.picks = s.checked = s.accepted = 0;
}

void Speculator::record_target_step(int n_tokens, double seconds) {
  Impl& s = *impl_;
  if (n_tokens < 1 || size_t(n_tokens) > s.measured.size() || !(seconds > 0)) return;
  double& m = s.measured[size_t(n_tokens - 1)];
  m = m > 0 ? 0.8 * m + 0.2 * seconds : seconds;
  const double predicted = s.predicted.target[size_t(n_tokens - 1)];
  if (!(predicted > 0)) return;
  s.scale = s.scaled ? 0.9 * s.scale + 0.1 * (seconds / predicted) : seconds / predicted;
  s.scaled = true;
}

}  // namespace straw
