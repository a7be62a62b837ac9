// straw::Speculator: the proposers of speculative decoding (a draft model, prompt lookup, the
// target's own MTP block) and the choice of verified tokens (model/speculative.h), with the
// draft-length controller and cost model of sched/speculation.h.
#include <algorithm>
#include <atomic>
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

  // Mtp: the target's session (attach()), the MTP block's cache and what it holds: entries
  // 0..m-1 of mtp_seq = t_0..t_m, each computed from the main model's hidden state at its position.
  Session* session = nullptr;
  std::unique_ptr<model::KvCache> mtp_kv;
  std::vector<int32_t> mtp_seq;
  std::vector<float> mtp_logits;  // [n_vocab]: the latest MTP row's logits
  std::vector<float> mtp_hidden;  // [n_embd]: its output hidden state (the next chained input)

  void propose_draft(std::span<const int32_t> sequence, const model::Sampler& target_sampler,
                     int k);
  void propose_ngram(std::span<const int32_t> sequence, int k);
  void propose_mtp(std::span<const int32_t> sequence, const model::Sampler& target_sampler, int k);
  // Brings the MTP cache up to `sequence` from the session's kept hidden states, the last row's
  // logits and output hidden state into mtp_logits / mtp_hidden; returns the block evaluations,
  // or -1 when the session does not hold `sequence` (minus its last token) or its last hidden
  // state. lazy: only when a micro-batch of rows is waiting, and without logits.
  int mtp_catch_up(std::span<const int32_t> sequence, bool lazy);
  // The sampler proposals are drawn with: the target's settings and penalty window.
  model::Sampler& proposal_sampler(std::span<const int32_t> sequence,
                                   const model::Sampler& target_sampler);
  // Draws a proposal from a row of the proposer's logits and appends it (with its distribution
  // when sampling); false, appending nothing, when the proposer is not confident enough.
  bool add_proposal(std::span<const float> logits, model::Sampler& ds);
  // Runs the MTP block (model::Transformer::forward_mtp) holding the model's evaluation lock.
  void run_mtp(const model::MtpStep& step);
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
  if (options.method == SpecMethod::Mtp) {
    Model::Impl& m = target.impl();
    m.bind_mtp();  // throws for a file without an MTP layer
    const int64_t n_ctx = ctx > 0 ? ctx : m.n_ctx;
    s.mtp_kv = std::make_unique<model::KvCache>(m.hp, n_ctx, kv_type(m.options.kv_type_k),
                                                kv_type(m.options.kv_type_v), *m.devices.output);
    s.mtp_logits.resize(size_t(m.hp.n_vocab));
    s.mtp_hidden.resize(size_t(m.hp.n_embd));
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
  if (k <= 0 || k < s.o.draft_min) {
    if (s.o.method == SpecMethod::Mtp) s.mtp_catch_up(sequence, /*lazy=*/true);
    return {};
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (s.o.method == SpecMethod::Draft)
    s.propose_draft(sequence, sampler.impl_->sampler, k);
  else if (s.o.method == SpecMethod::Mtp)
    s.propose_mtp(sequence, sampler.impl_->sampler, k);
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

model::Sampler& Speculator::Impl::proposal_sampler(std::span<const int32_t> sequence,
                                                   const model::Sampler& target_sampler) {
  // The proposer samples with the target's settings (temperature > 0: proposals drawn from q, its
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
    const int64_t n = int64_t(sequence.size());
    const int64_t w = tp.penalty_last_n < 0 ? n : std::min<int64_t>(n, tp.penalty_last_n);
    for (int64_t i = n - w; i < n; ++i) ds.accept(sequence[size_t(i)]);
  }
  return ds;
}

bool Speculator::Impl::add_proposal(std::span<const float> logits, model::Sampler& ds) {
  const bool sampling = ds.params().temperature > 0.0f;
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
  if (confidence < o.draft_p_min || tok >= target.n_vocab()) {
    if (sampling) q.pop_back();
    return false;
  }
  proposals.push_back(tok);
  ds.accept(tok);
  return true;
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
  model::Sampler& ds = proposal_sampler(sequence, target_sampler);
  for (int j = 0; j < k; ++j) {
    if (!add_proposal(d.logits(), ds) || j + 1 == k) break;
    const int32_t one[1] = {proposals.back()};
    d.eval(one);
    ++evals;
  }
  // The draft's time per evaluation (its cost per proposed token in the model).
  const double per_eval = seconds_since(t0) / evals;
  draft_measured = draft_measured > 0 ? 0.8 * draft_measured + 0.2 * per_eval : per_eval;
}

void Speculator::attach(Session& target) {
  Impl& s = *impl_;
  if (s.o.method != SpecMethod::Mtp) return;
  if (&target.model() != &s.target)
    fail("Speculator::attach: the session belongs to another model than the speculator's target");
  if (s.session != &target) s.mtp_seq.clear();
  s.session = &target;
  if (target.n_ctx() > s.mtp_kv->n_ctx()) {
    // A session longer than the context the speculator was made for: a cache of its length.
    const Model::Impl& m = s.target.impl();
    s.mtp_kv = std::make_unique<model::KvCache>(m.hp, target.n_ctx(), kv_type(m.options.kv_type_k),
                                                kv_type(m.options.kv_type_v), *m.devices.output);
    s.mtp_seq.clear();
  }
  SessionInternals::keep_hidden(target);
}

void Speculator::Impl::run_mtp(const model::MtpStep& step) {
  const EvaluationGuard guard(
      target.impl(),
      "two evaluations of one model overlap: the MTP proposer runs the target model's MTP block, "
      "which must not run while a session of the model evaluates");
  target.impl().transformer().forward_mtp(step);
}

int Speculator::Impl::mtp_catch_up(std::span<const int32_t> sequence, bool lazy) {
  if (!session)
    fail(
        "speculation with the MTP layer needs the target's session: call "
        "Speculator::attach(session) before evaluating its prompt (generate() does it)");
  Session& t = *session;
  // sequence = t_0 .. t_P, t_P sampled but not evaluated: the MTP row at position P - 1 (the main
  // model's hidden state there, and t_P) predicts t_{P+1}.
  const int64_t P = int64_t(sequence.size()) - 1;
  if (P < 1 || t.n_past() != P || P > mtp_kv->n_ctx()) return -1;
  // Rows computed from the same tokens (so from the same hidden states) stay; the last one is
  // recomputed for its logits. Rows whose hidden states are gone (evaluated before attach()) keep
  // what the cache holds there: proposals may suffer, never the output.
  const size_t common = size_t(
      std::mismatch(mtp_seq.begin(), mtp_seq.begin() + std::min(mtp_seq.size(), sequence.size()),
                    sequence.begin())
          .first -
      mtp_seq.begin());
  const SessionInternals::Hidden h = SessionInternals::hidden(t);
  if (h.pos0 > P - 1 || h.pos0 + h.n < P) return -1;  // h_{P-1} was not kept
  int64_t from = std::clamp<int64_t>(int64_t(common) - 1, h.pos0, P - 1);
  const int max_rows = target.impl().transformer().max_batch();
  // Not proposing now: only keep the backlog of hidden states (RAM) under one micro-batch.
  if (lazy && P - from < max_rows) return -1;
  const int64_t E = target.impl().hp.n_embd;
  int evals = 0;
  while (from < P) {
    const int n = int(std::min<int64_t>(max_rows, P - from));
    const bool last = from + n == P && !lazy;
    model::MtpStep step;
    step.tokens = sequence.subspan(size_t(from + 1), size_t(n));
    step.hidden = h.rows + (from - h.pos0) * E;
    step.pos0 = from;
    step.kv = mtp_kv.get();
    step.logits = last ? mtp_logits.data() : nullptr;
    step.hidden_out = last ? mtp_hidden.data() : nullptr;
    run_mtp(step);
    ++evals;
    from += n;
  }
  mtp_seq.assign(sequence.begin(), sequence.end());
  SessionInternals::drop_hidden_before(t, P - 1);
  return evals;
}

void Speculator::Impl::propose_mtp(std::span<const int32_t> sequence,
                                   const model::Sampler& target_sampler, int k) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t P = int64_t(sequence.size()) - 1;
  // Chained rows go to positions P .. P + k - 2 of the MTP cache.
  k = int(std::min<int64_t>(k, mtp_kv->n_ctx() - P + 1));
  if (k <= 0) return;
  int evals = mtp_catch_up(sequence, /*lazy=*/false);
  if (evals < 0) return;
  // Proposal j + 1 comes from the row at position P + j: the MTP block's own output hidden state
  // (in place of the main model's, not known yet) and proposal j, as vLLM chains it.
  model::Sampler& ds = proposal_sampler(sequence, target_sampler);
  for (int j = 0; j < k; ++j) {
    if (!add_proposal(mtp_logits, ds) || j + 1 == k) break;
    model::MtpStep step;
    step.tokens = std::span(&proposals.back(), 1);
    step.hidden = mtp_hidden.data();
    step.pos0 = P + j;
    step.kv = mtp_kv.get();
    step.logits = mtp_logits.data();
    step.hidden_out = mtp_hidden.data();
    run_mtp(step);
    ++evals;
  }
  const double per_eval = seconds_since(t0) / std::max(evals, 1);
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
