// Speculative decoding: greedy output equals plain decoding for every proposer, a model as its own
// draft accepts everything, speculative sampling keeps the target's distribution (chi-square, on
// the rule alone and end to end), rollback leaves the cache as a fresh evaluation, prompt lookup,
// the cost model and the draft-length controller, and the refusal of a foreign vocabulary.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "model/sampler.h"
#include "model/speculative.h"
#include "sched/speculation.h"
#include "straw/straw.h"
#include "test_util.h"

namespace {

using namespace straw;

std::string model_path(const std::string& name) {
  if (name == "stories260K.gguf") return STRAW_SOURCE_DIR "/models/stories260K.gguf";
  return (test::testdata_dir() / "models" / name).string();
}

std::unique_ptr<Model> load(const std::string& name, int64_t ctx = 256) {
  ModelOptions o;
  o.path = model_path(name);
  o.threads = 2;
  o.ctx = int(ctx);
  o.device = DeviceChoice::Cpu;
  return Model::load(o);
}

std::vector<int32_t> run(Model& m, const std::vector<int32_t>& prompt, int n,
                         Speculator* spec = nullptr, GenerateResult* out = nullptr,
                         SamplingOptions sampling = {}) {
  Session s(m);
  GenerateOptions g;
  g.n_predict = n;
  g.sampling = sampling;
  if (!sampling.temperature) g.sampling.temperature = 0.0f;
  g.speculator = spec;
  GenerateResult r = generate(s, prompt, g, nullptr);
  if (out) *out = r;
  // The cache holds the prompt and every generated token (none of the rejected proposals).
  std::vector<int32_t> expect = prompt;
  expect.insert(expect.end(), r.tokens.begin(), r.tokens.end());
  EXPECT_EQ(std::vector<int32_t>(s.tokens().begin(), s.tokens().end()), expect);
  return r.tokens;
}

// A prompt whose continuation repeats prompt text: what prompt lookup is for.
const char* kRepeatingPrompt =
    "Once upon a time, there was a little girl named Lily. She loved to play with her ball. One "
    "day, Lily went to the park. Once upon a time, there was a little girl named";

// --- greedy equality -----------------------------------------------------------------------------

void check_greedy_equal(const std::string& target_name, const std::string& draft_name) {
  SCOPED_TRACE(target_name + " with draft " + draft_name);
  auto target = load(target_name);
  auto draft = load(draft_name);
  const std::vector<int32_t> prompt = target->tokenize(kRepeatingPrompt);
  const std::vector<int32_t> plain = run(*target, prompt, 48);
  ASSERT_EQ(plain.size(), 48u);

  SpeculativeOptions ngram;
  ngram.method = SpecMethod::Ngram;
  ngram.adaptive = false;
  ngram.draft_max = 5;
  Speculator sn(*target, ngram);
  GenerateResult rn;
  EXPECT_EQ(run(*target, prompt, 48, &sn, &rn), plain) << "ngram";
  EXPECT_GT(rn.speculation.steps, 0);

  SpeculativeOptions d;
  d.method = SpecMethod::Draft;
  d.draft_model = draft.get();
  for (bool adaptive : {false, true}) {
    d.adaptive = adaptive;
    d.draft_max = adaptive ? 16 : 4;
    d.draft_p_min = adaptive ? 0.8f : 0.0f;
    Speculator sd(*target, d);
    GenerateResult rd;
    EXPECT_EQ(run(*target, prompt, 48, &sd, &rd), plain) << "draft, adaptive " << adaptive;
    if (!adaptive) {
      EXPECT_GT(rd.speculation.steps, 0);
    }
  }
}

TEST(Speculative, GreedyEqualsPlainDecodingOnTheBundledModel) {
  check_greedy_equal("stories260K.gguf", "stories260K.gguf");
}

TEST(Speculative, GreedyEqualsPlainDecodingOnTheGoldenModels) {
  STRAW_REQUIRE_TESTDATA();
  check_greedy_equal("stories260K-q8_0.gguf", "stories260K.gguf");
  check_greedy_equal("llama-tiny-f16.gguf", "llama-tiny-q4_k_m.gguf");
  check_greedy_equal("qwen2-tiny-f32.gguf", "qwen2-tiny-iq4_xs.gguf");
  check_greedy_equal("qwen2-tiny-q4_k_m.gguf", "qwen2-tiny-q8_0.gguf");
  check_greedy_equal("qwen3-tiny-f16.gguf", "qwen3-tiny-q4_k_m.gguf");
  check_greedy_equal("qwen3-tiny-iq4_xs.gguf", "qwen3-tiny-iq4_xs.gguf");
  // Gated DeltaNet layers: rejected proposals roll the recurrent state back from a checkpoint.
  check_greedy_equal("qwen35-tiny-f16.gguf", "qwen35-tiny-q4_k_m.gguf");
}

TEST(Speculative, AModelAsItsOwnDraftAcceptsEveryToken) {
  auto target = load("stories260K.gguf");
  auto draft = load("stories260K.gguf");
  const std::vector<int32_t> prompt = target->tokenize("Once upon a time");
  for (int k : {1, 4, 8}) {
    SpeculativeOptions o;
    o.method = SpecMethod::Draft;
    o.draft_model = draft.get();
    o.adaptive = false;
    o.draft_max = k;
    o.draft_p_min = 0.0f;
    Speculator spec(*target, o);
    GenerateResult r;
    // n = a multiple of k + 1, so that the last step is a whole one.
    run(*target, prompt, 8 * (k + 1), &spec, &r);
    ASSERT_EQ(r.tokens.size(), size_t(8 * (k + 1)));
    EXPECT_EQ(r.speculation.accepted, r.speculation.checked);
    EXPECT_DOUBLE_EQ(r.speculation.acceptance_rate(), 1.0);
    // The first token comes from the prompt's logits; then every step yields k + 1 tokens (the
    // last step proposes only what is still wanted).
    EXPECT_GE(r.speculation.tokens_per_step(), k + 0.5) << "k " << k;
    // Every evaluation carried proposals; the last step ends on an accepted one.
    EXPECT_EQ(r.decode_steps, r.speculation.steps);
  }
}

// --- speculative sampling preserves the distribution ---------------------------------------------

// Pearson's chi-square of counts against probabilities, bins with an expected count under 5 pooled.
struct ChiSquare {
  double stat = 0;
  int df = 0;
};
ChiSquare chi_square(const std::map<std::vector<int32_t>, int>& counts,
                     const std::map<std::vector<int32_t>, double>& probs, int n) {
  ChiSquare c;
  double pooled_e = 0, pooled_o = 0;
  int bins = 0;
  for (const auto& [key, p] : probs) {
    const double e = p * n;
    const auto it = counts.find(key);
    const double o = it == counts.end() ? 0 : it->second;
    if (e < 5) {
      pooled_e += e;
      pooled_o += o;
      continue;
    }
    c.stat += (o - e) * (o - e) / e;
    ++bins;
  }
  if (pooled_e > 0) {
    c.stat += (pooled_o - pooled_e) * (pooled_o - pooled_e) / pooled_e;
    ++bins;
  }
  // Outcomes outside the support would be an error of their own.
  for (const auto& [key, o] : counts) EXPECT_TRUE(probs.count(key)) << "impossible outcome";
  c.df = bins - 1;
  return c;
}

// The chi-square quantile at 1 - 1e-4 (Wilson-Hilferty): a deterministic test (fixed seeds) that a
// correct sampler passes unless the seeds fall in that tail.
double chi_square_limit(int df) {
  const double z = 3.719;
  const double a = 2.0 / (9.0 * df);
  return df * std::pow(1 - a + z * std::sqrt(a), 3);
}

TEST(Speculative, TheAcceptanceRuleDrawsFromTheTargetDistribution) {
  // Six tokens; q is far from p (it proposes token 4, which p never draws, and misses token 5).
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, -1e30f, 0.7f};
  const std::vector<model::TokenProb> q = {{0, 0.1f}, {1, 0.4f}, {3, 0.2f}, {4, 0.3f}};
  model::SamplingParams params;
  params.temperature = 1.0f;
  params.top_k = 0;
  params.top_p = 1.0f;
  params.min_p = 0.0f;
  params.seed = 11;
  model::Sampler target(params);
  params.seed = 12;  // the proposer's draws must be independent of the target's
  model::Sampler proposer(params);
  std::vector<double> p(6);
  double z = 0;
  for (size_t i = 0; i < 6; ++i) z += p[i] = std::exp(double(logits[i]) - 2.0);
  std::map<std::vector<int32_t>, double> probs;
  for (int32_t i = 0; i < 6; ++i)
    if (p[size_t(i)] / z > 0) probs[{i}] = p[size_t(i)] / z;
  std::map<std::vector<int32_t>, int> counts;
  std::vector<float> scratch;
  const int n = 200000;
  int accepted = 0;
  for (int t = 0; t < n; ++t) {
    const int32_t x = proposer.draw(q);
    const int32_t y = model::verify_with_distribution(target, logits, x, q, scratch);
    accepted += y == x;
    ++counts[{y}];
  }
  const ChiSquare c = chi_square(counts, probs, n);
  EXPECT_LT(c.stat, chi_square_limit(c.df)) << "df " << c.df;
  // The acceptance rate is sum_x min(p(x), q(x)).
  double overlap = 0;
  for (const auto& t : q) overlap += std::min(double(t.p), t.id < 6 ? p[size_t(t.id)] / z : 0.0);
  EXPECT_NEAR(double(accepted) / n, overlap, 0.005);
  EXPECT_TRUE(std::all_of(scratch.begin(), scratch.end(), [](float v) { return v == 0; }));
}

// Float64 top-k softmax of a row at temperature 1: the distribution the target's sampler draws
// from with top_k = k, top_p = 1, min_p = 0.
std::map<int32_t, double> top_k_softmax(std::span<const float> logits, int k) {
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
    return logits[size_t(a)] > logits[size_t(b)] ||
           (logits[size_t(a)] == logits[size_t(b)] && a < b);
  });
  const double m = logits[size_t(ids[0])];
  double z = 0;
  std::map<int32_t, double> out;
  for (int i = 0; i < k; ++i) z += out[ids[size_t(i)]] = std::exp(logits[size_t(ids[i])] - m);
  for (auto& [id, p] : out) p /= z;
  return out;
}

TEST(Speculative, SpeculativeSamplingKeepsTheTargetsDistributionEndToEnd) {
  STRAW_REQUIRE_TESTDATA();
  // A quantized copy as the draft: close to the target but not equal, so that proposals are both
  // accepted and rejected. Top-4 sampling makes the outcomes few (a small vocabulary in effect):
  // the joint distribution of the tokens 2 and 3 after a fixed first token is 16 outcomes.
  auto target = load("qwen2-tiny-f32.gguf");
  auto draft = load("qwen2-tiny-iq4_xs.gguf");
  const std::vector<int32_t> prompt = target->tokenize("The quick brown fox");
  SamplingOptions so;
  so.temperature = 1.0f;
  so.top_k = 4;
  so.top_p = 1.0f;
  so.min_p = 0.0f;

  // The first generated token comes from the prompt's logits without speculation: fix it to the
  // most probable one, then count (token 2, token 3) over runs that drew it.
  Session ref(*target);
  ref.eval(prompt);
  const std::map<int32_t, double> p1 = top_k_softmax(ref.logits(), 4);
  const int32_t first = std::max_element(p1.begin(), p1.end(), [](auto& a, auto& b) {
                          return a.second < b.second;
                        })->first;
  std::map<std::vector<int32_t>, double> probs;
  std::vector<int32_t> seq = prompt;
  seq.push_back(first);
  ref.truncate(0);
  ref.eval(seq);
  for (const auto& [t2, p2] : top_k_softmax(ref.logits(), 4)) {
    std::vector<int32_t> seq3 = seq;
    seq3.push_back(t2);
    Session s3(*target);
    s3.eval(seq3);
    for (const auto& [t3, p3] : top_k_softmax(s3.logits(), 4)) probs[{t2, t3}] = p2 * p3;
  }

  SpeculativeOptions o;
  o.method = SpecMethod::Draft;
  o.draft_model = draft.get();
  o.adaptive = false;
  o.draft_max = 2;
  o.draft_p_min = 0.0f;
  Speculator spec(*target, o);
  Session s(*target);
  std::map<std::vector<int32_t>, int> counts;
  int n = 0, runs = 0;
  int64_t rejected = 0;
  while (n < 2000) {
    ASSERT_LT(++runs, 20000) << "the first token is drawn too rarely";
    // Reuse the prompt's cache: evaluate only its last token again.
    s.truncate(std::min<int64_t>(s.common_prefix(prompt), int64_t(prompt.size()) - 1));
    const std::vector<int32_t> rest(prompt.begin() + s.n_past(), prompt.end());
    GenerateOptions g;
    g.n_predict = 3;
    g.sampling = so;
    g.sampling.seed = uint64_t(1000 + runs);
    g.speculator = &spec;
    const GenerateResult r = generate(s, rest, g, nullptr);
    ASSERT_EQ(r.tokens.size(), 3u);
    rejected += r.speculation.checked - r.speculation.accepted;
    if (r.tokens[0] != first) continue;
    ++counts[{r.tokens[1], r.tokens[2]}];
    ++n;
  }
  EXPECT_GT(rejected, 100) << "too few rejections to test the residual draws";
  const ChiSquare c = chi_square(counts, probs, n);
  EXPECT_LT(c.stat, chi_square_limit(c.df)) << "df " << c.df;
}

// --- rollback ------------------------------------------------------------------------------------

using straw::test::nrmse;

int32_t argmax(std::span<const float> v) {
  return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

TEST(Speculative, RollbackLeavesTheCacheAsAFreshEvaluation) {
  auto model = load("stories260K.gguf");
  const std::vector<int32_t> prompt = model->tokenize("Once upon a time, there was");
  // Verify 1 + 4 tokens, reject the last 3, continue with another token: the logits equal those
  // of a session that never saw the rejected tokens, whether it evaluates the kept sequence token
  // by token or in one batch (up to float rounding: one row takes the matvec kernels, several the
  // GEMM kernels).
  Session s(*model);
  s.eval(prompt);
  const std::vector<int32_t> step = {100, 200, 300, 400, 500};
  s.eval(step, true);
  s.truncate(s.n_past() - 3);
  const int32_t next[1] = {42};
  s.eval(next);
  std::vector<int32_t> kept = prompt;
  kept.insert(kept.end(), {100, 200, 42});
  EXPECT_EQ(std::vector<int32_t>(s.tokens().begin(), s.tokens().end()), kept);
  Session batch(*model), single(*model);
  batch.eval(kept);
  for (int32_t t : kept) single.eval(std::span(&t, 1));
  EXPECT_LT(nrmse(s.logits(), batch.logits()), 1e-4);
  EXPECT_LT(nrmse(s.logits(), single.logits()), 1e-4);
  EXPECT_EQ(argmax(s.logits()), argmax(single.logits()));
  // Truncating inside the verified rows keeps the row of the new last token.
  s.eval(step, true);
  s.truncate(s.n_past() - 2);
  Session kept3(*model);
  std::vector<int32_t> k3 = kept;
  k3.insert(k3.end(), {100, 200, 300});
  kept3.eval(k3);
  EXPECT_LT(nrmse(s.logits(), kept3.logits()), 1e-4);
  s.truncate(s.n_past() - 3);  // before the verified rows: no logits left
  EXPECT_THROW(s.logits(), Error);
}

TEST(Speculative, RollbackRestoresTheRecurrentState) {
  STRAW_REQUIRE_TESTDATA();
  // Qwen3.5's linear-attention layers cannot be rewound: truncate restores a checkpoint and
  // evaluates the kept tokens again. Repeated verifications with rejections (as speculation does
  // step after step) leave the state of a fresh evaluation of the kept sequence.
  auto model = load("qwen35-tiny-f16.gguf");
  const std::vector<int32_t> prompt = model->tokenize("The quick brown fox");
  Session s(*model);
  s.eval(prompt);
  std::vector<int32_t> kept = prompt;
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE(round);
    const std::vector<int32_t> step = {int32_t(100 + round), 200, 300, 400, 500};
    s.eval(step, true);
    const int rejected = 1 + round % 3;
    s.truncate(s.n_past() - rejected);
    kept.insert(kept.end(), step.begin(), step.end() - rejected);
    ASSERT_EQ(std::vector<int32_t>(s.tokens().begin(), s.tokens().end()), kept);
    // The kept row of the verification is the logits of the new last token.
    Session fresh(*model);
    fresh.eval(kept);
    EXPECT_LT(nrmse(s.logits(), fresh.logits()), 2e-3);
  }
  const int32_t next[1] = {42};
  s.eval(next);
  kept.push_back(42);
  Session fresh(*model);
  fresh.eval(kept);
  EXPECT_LT(nrmse(s.logits(), fresh.logits()), 2e-3);
  EXPECT_EQ(argmax(s.logits()), argmax(fresh.logits()));
}

TEST(Speculative, AfterRejectionsTheNextLogitsEqualAFreshEvaluation) {
  STRAW_REQUIRE_TESTDATA();
  // The IQ4_XS copy as the draft at temperature 1.5: some proposals are rejected.
  auto target = load("qwen2-tiny-f32.gguf");
  auto draft = load("qwen2-tiny-iq4_xs.gguf");
  const std::vector<int32_t> prompt = target->tokenize("The quick brown fox");
  SpeculativeOptions o;
  o.method = SpecMethod::Draft;
  o.draft_model = draft.get();
  o.adaptive = false;
  o.draft_max = 6;
  o.draft_p_min = 0.0f;
  Speculator spec(*target, o);
  Session s(*target);
  GenerateOptions g;
  g.n_predict = 40;
  g.sampling.temperature = 1.5f;
  g.sampling.seed = 5;
  g.speculator = &spec;
  const GenerateResult r = generate(s, prompt, g, nullptr);
  ASSERT_GT(r.speculation.checked - r.speculation.accepted, 0) << "no rejection happened";
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), r.tokens.begin(), r.tokens.end());
  Session fresh(*target);
  fresh.eval(all);
  EXPECT_LT(nrmse(s.logits(), fresh.logits()), 1e-4);
  EXPECT_EQ(argmax(s.logits()), argmax(fresh.logits()));
}

// --- prompt lookup -------------------------------------------------------------------------------

TEST(Speculative, PromptLookupProposesTheContinuationOfTheLongestRecentMatch) {
  using model::ngram_lookup;
  using V = std::vector<int32_t>;
  // The suffix [2 3] occurs at 1 and 6; the most recent one is followed by 9 8.
  EXPECT_EQ(ngram_lookup(V{1, 2, 3, 4, 5, 7, 2, 3, 9, 8, 2, 3}, 3, 4), (V{9, 8, 2, 3}));
  // A longer match wins over a more recent shorter one: [1 2 3] at 0, [2 3] (only) at 5.
  EXPECT_EQ(ngram_lookup(V{1, 2, 3, 4, 5, 2, 3, 6, 1, 2, 3}, 3, 2), (V{4, 5}));
  // A periodic text continues its period past the end.
  EXPECT_EQ(ngram_lookup(V{7, 1, 2, 1, 2}, 2, 5), (V{1, 2, 1, 2, 1}));
  // No suffix recurs; too short; nothing wanted.
  EXPECT_TRUE(ngram_lookup(V{1, 2, 3, 4}, 3, 4).empty());
  EXPECT_TRUE(ngram_lookup(V{1}, 3, 4).empty());
  EXPECT_TRUE(ngram_lookup(V{1, 2, 1, 2}, 3, 0).empty());
}

TEST(Speculative, PromptLookupAcceptsRepeatedText) {
  auto model = load("stories260K.gguf");
  const std::vector<int32_t> prompt = model->tokenize(kRepeatingPrompt);
  SpeculativeOptions o;
  o.method = SpecMethod::Ngram;
  Speculator spec(*model, o);
  GenerateResult r;
  run(*model, prompt, 32, &spec, &r);
  // The continuation re-types the prompt's first sentence: most proposals are accepted.
  EXPECT_GT(r.speculation.acceptance_rate(), 0.5);
  EXPECT_GT(r.speculation.tokens_per_step(), 2.0);
  EXPECT_LT(r.decode_steps, 32);
}

// --- cost model and controller -------------------------------------------------------------------

TEST(Speculative, CostModelPredictsSpeedupsAndWhenSpeculationDoesNotPay) {
  EXPECT_DOUBLE_EQ(sched::expected_tokens(0.5, 0), 1.0);
  EXPECT_DOUBLE_EQ(sched::expected_tokens(0.5, 2), 1.75);
  EXPECT_DOUBLE_EQ(sched::expected_tokens(1.0, 4), 5.0);
  // Memory-bound target: a step of n tokens costs 1 + 0.05 (n - 1).
  sched::SpecCost c;
  for (int n = 1; n <= 17; ++n) c.target.push_back(1.0 + 0.05 * (n - 1));
  c.draft_token = 0.0;
  EXPECT_NEAR(sched::speedup(c, 1.0, 4), 5.0 / 1.2, 1e-12);
  const sched::DraftChoice free_draft = sched::best_draft_length(c, 0.9, 0, 16);
  EXPECT_GT(free_draft.k, 4);
  EXPECT_GT(free_draft.speedup, 3.0);
  // Lower acceptance: shorter drafts.
  EXPECT_LT(sched::best_draft_length(c, 0.5, 0, 16).k, free_draft.k);
  // A draft as costly as the target never pays.
  c.draft_token = 1.0;
  EXPECT_EQ(sched::best_draft_length(c, 0.99, 0, 16).k, 0);
  // A draft a tenth of the target pays at 0.7.
  c.draft_token = 0.1;
  const sched::DraftChoice d = sched::best_draft_length(c, 0.7, 0, 16);
  EXPECT_GT(d.k, 0);
  EXPECT_GT(d.speedup, 1.5);
  // Past the table, steps extend linearly.
  EXPECT_NEAR(c.step(21), 2.0, 1e-12);
}

TEST(Speculative, ControllerFollowsTheAcceptanceRateAndProbesWhenIdle) {
  sched::SpecCost c;
  for (int n = 1; n <= 17; ++n) c.target.push_back(1.0 + 0.05 * (n - 1));
  c.draft_token = 0.05;
  sched::DraftController ctl(0, 16, true, 0.6);
  for (int i = 0; i < 40; ++i) {
    const int k = ctl.next(c);
    ctl.observe(k, k);  // everything accepted
  }
  EXPECT_GT(ctl.acceptance(), 0.95);
  EXPECT_GE(ctl.next(c), 12);
  for (int i = 0; i < 60; ++i) {
    const int k = ctl.next(c);
    if (k > 0) ctl.observe(1, 0);  // the first proposal always rejected
  }
  EXPECT_LT(ctl.acceptance(), 0.2);
  // Not paying: mostly no proposals, one probe of one token every few steps.
  int proposing = 0;
  for (int i = 0; i < 32; ++i) {
    const int k = ctl.next(c);
    EXPECT_LE(k, 1);
    proposing += k > 0;
    if (k > 0) ctl.observe(1, 0);
  }
  EXPECT_GE(proposing, 2);
  EXPECT_LE(proposing, 6);
  // Fixed length: always draft_max.
  sched::DraftController fixed(0, 5, false);
  EXPECT_EQ(fixed.next(c), 5);
}

// --- options and vocabulary ----------------------------------------------------------------------

TEST(Speculative, AForeignVocabularyIsRefusedSayingWhatDiffers) {
  STRAW_REQUIRE_TESTDATA();
  auto target = load("qwen2-tiny-f32.gguf");
  auto other = load("llama-tiny-f16.gguf");
  SpeculativeOptions o;
  o.method = SpecMethod::Draft;
  o.draft_model = other.get();
  try {
    Speculator spec(*target, o);
    FAIL() << "accepted a draft model with another vocabulary";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("token 410"), std::string::npos) << m;
    EXPECT_NE(m.find("draft"), std::string::npos) << m;
  }
}

TEST(Speculative, BadOptionsAreRefused) {
  auto model = load("stories260K.gguf");
  SpeculativeOptions o;
  o.method = SpecMethod::Draft;  // no draft model
  EXPECT_THROW(Speculator(*model, o), Error);
  o.draft_model = model.get();  // the target itself
  EXPECT_THROW(Speculator(*model, o), Error);
  o.method = SpecMethod::Ngram;
  o.draft_min = 5;
  o.draft_max = 4;
  EXPECT_THROW(Speculator(*model, o), Error);
  o.draft_min = 0;
  o.draft_p_min = 1.5f;
  EXPECT_THROW(Speculator(*model, o), Error);
  o.draft_p_min = 0.5f;
  o.ngram_size = 0;
  EXPECT_THROW(Speculator(*model, o), Error);
}

TEST(Speculative, DraftMinDropsShortProposals) {
  auto target = load("stories260K.gguf");
  const std::vector<int32_t> prompt = target->tokenize(kRepeatingPrompt);
  // Prompt lookup with draft_min above any proposal the budget allows: nothing is verified.
  SpeculativeOptions o;
  o.method = SpecMethod::Ngram;
  o.adaptive = false;
  o.draft_max = 4;
  o.draft_min = 4;
  Speculator spec(*target, o);
  GenerateResult r;
  const std::vector<int32_t> plain = run(*target, prompt, 3);
  EXPECT_EQ(run(*target, prompt, 3, &spec, &r), plain);
  // With 3 tokens wanted, at most 2 could be proposed after the first: below draft_min.
  EXPECT_EQ(r.speculation.steps, 0);
}

}  // namespace
