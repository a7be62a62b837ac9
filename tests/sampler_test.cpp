// Sampler chain semantics (greedy, top_k, top_p, min_p, temperature, penalties, seeding, edge
// rows) and resolve_sampling's user > metadata > default merge. Distribution checks draw many
// samples with a fixed seed and compare frequencies with a chi-square bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/sampler.h"
#include "straw/error.h"
#include "test_util.h"

namespace straw::model {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Every filter off, temperature 1: plain softmax sampling.
SamplingParams plain(uint64_t seed = 1) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = seed;
  return p;
}

SamplingParams greedy_params() {
  SamplingParams p = plain();
  p.temperature = 0.0f;
  return p;
}

std::vector<int> histogram(Sampler& s, const std::vector<float>& logits, int draws) {
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < draws; ++i) {
    const int32_t t = s.sample(logits);
    EXPECT_GE(t, 0);
    EXPECT_LT(t, static_cast<int32_t>(logits.size()));
    if (t >= 0 && t < static_cast<int32_t>(logits.size())) ++counts[static_cast<size_t>(t)];
  }
  return counts;
}

// Softmax of logits / temp over the tokens in `keep` (others get 0).
std::vector<double> expected_probs(const std::vector<float>& logits, const std::vector<int>& keep,
                                   double temp = 1.0) {
  std::vector<double> p(logits.size(), 0.0);
  double sum = 0.0;
  for (int i : keep)
    sum += p[static_cast<size_t>(i)] = std::exp(logits[static_cast<size_t>(i)] / temp);
  for (double& x : p) x /= sum;
  return p;
}

// Chi-square statistic over the categories with nonzero expectation; categories with zero
// expectation must have no draws at all.
double chi_square(const std::vector<int>& counts, const std::vector<double>& probs, int draws) {
  double chi2 = 0.0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (probs[i] == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " should never be drawn";
      continue;
    }
    const double e = probs[i] * draws;
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  return chi2;
}

// 99.9% quantile of chi-square with up to 5 degrees of freedom is 20.5.
constexpr double kChi2Bound = 21.0;
constexpr int kDraws = 20000;

TEST(Sampler, GreedyPicksArgmaxLowestIdOnTies) {
  Sampler s(greedy_params());
  EXPECT_EQ(s.sample(std::vector<float>{1.0f, 3.0f, 2.0f, 3.0f}), 1);
  EXPECT_EQ(s.sample(std::vector<float>{-5.0f, -1.0f, -1.0f}), 1);
  EXPECT_EQ(s.sample(std::vector<float>{0.0f, 0.0f, 0.0f}), 0);
  SamplingParams neg = greedy_params();
  neg.temperature = -1.0f;
  Sampler s2(neg);
  EXPECT_EQ(s2.sample(std::vector<float>{0.5f, 0.25f, 7.0f}), 2);
}

TEST(Sampler, TopK1IsGreedy) {
  SamplingParams p;  // the default chain, temperature 0.8
  p.top_k = 1;
  p.seed = 7;
  Sampler s(p);
  std::mt19937 gen(99);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int row = 0; row < 200; ++row) {
    std::vector<float> logits(50);
    for (float& l : logits) l = normal(gen);
    const auto argmax = std::max_element(logits.begin(), logits.end()) - logits.begin();
    ASSERT_EQ(s.sample(logits), argmax);
  }
}

TEST(Sampler, TopKLargerThanVocabKeepsAll) {
  const std::vector<float> logits{0.5f, 1.0f, -0.5f, 0.0f, 0.25f};
  SamplingParams p = plain(11);
  p.top_k = 1000;
  Sampler big(p);
  const auto counts = histogram(big, logits, kDraws);
  EXPECT_LT(chi_square(counts, expected_probs(logits, {0, 1, 2, 3, 4}), kDraws), kChi2Bound);
  // top_k = vocabulary size does the same (both sort every candidate): the same draws.
  p.top_k = 5;
  Sampler exact(p);
  Sampler big2(SamplingParams{big.params()});
  for (int i = 0; i < 100; ++i) ASSERT_EQ(exact.sample(logits), big2.sample(logits));
}

TEST(Sampler, TopKKeepsTheKBest) {
  const std::vector<float> logits{0.1f, 2.0f, 1.0f, 1.5f, -3.0f, 0.0f};
  SamplingParams p = plain(5);
  p.top_k = 3;
  Sampler s(p);
  const auto counts = histogram(s, logits, kDraws);
  EXPECT_LT(chi_square(counts, expected_probs(logits, {1, 2, 3}), kDraws), kChi2Bound);
}

// The one-pass top-k selection on a large row with many exact ties and with penalties (which
// visit the penalized tokens last): every draw is among the reference k best of the penalized
// logits, ties broken toward lower ids, and all of those are drawn.
TEST(Sampler, TopKSelectionWithTiesAndPenalties) {
  std::mt19937 gen(77);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(5000);
  for (float& l : logits) l = std::round(normal(gen) * 2.0f) / 2.0f;  // steps of 0.5: many ties
  SamplingParams p = plain(31);
  p.top_k = 40;
  p.temperature = 100.0f;  // nearly uniform over the kept set
  p.repeat_penalty = 1.5f;
  p.presence_penalty = 0.5f;
  Sampler s(p);
  // Penalize the current top tokens and a few others.
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  const auto by_logit = [](const std::vector<float>& l) {
    return [&l](int a, int b) {
      return l[static_cast<size_t>(a)] > l[static_cast<size_t>(b)] ||
             (l[static_cast<size_t>(a)] == l[static_cast<size_t>(b)] && a < b);
    };
  };
  std::sort(order.begin(), order.end(), by_logit(logits));
  std::vector<float> penalized = logits;
  for (int k = 0; k < 30; k += 3) {
    const auto t = static_cast<size_t>(order[static_cast<size_t>(k)]);
    s.accept(static_cast<int32_t>(t));
    const float l = penalized[t];
    penalized[t] = (l <= 0.0f ? l * 1.5f : l / 1.5f) - 0.5f;
  }
  std::sort(order.begin(), order.end(), by_logit(penalized));
  std::vector<char> in_top(logits.size(), 0);
  for (size_t k = 0; k < 40; ++k) in_top[static_cast<size_t>(order[k])] = 1;
  std::vector<char> seen(logits.size(), 0);
  for (int i = 0; i < 4000; ++i) {
    const auto t = static_cast<size_t>(s.sample(logits));
    ASSERT_TRUE(in_top[t]) << "token " << t << " is not among the 40 best";
    seen[t] = 1;
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 40);
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingP) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 (in shuffled token order).
  const std::vector<float> logits{std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
  SamplingParams p = plain(3);
  p.top_p = 0.75f;  // 0.5 < 0.75 <= 0.8: tokens 1 and 3
  Sampler s(p);
  auto counts = histogram(s, logits, kDraws);
  EXPECT_LT(chi_square(counts, expected_probs(logits, {1, 3}), kDraws), kChi2Bound);

  p.top_p = 0.9f;  // 0.8 < 0.9 <= 0.95: tokens 1, 3, 0
  Sampler s2(p);
  counts = histogram(s2, logits, kDraws);
  EXPECT_LT(chi_square(counts, expected_probs(logits, {1, 3, 0}), kDraws), kChi2Bound);

  p.top_p = 0.1f;  // the best token alone, unless min_keep asks for more
  Sampler s3(p);
  EXPECT_EQ(histogram(s3, logits, 200)[1], 200);
  p.min_keep = 3;
  Sampler s4(p);
  counts = histogram(s4, logits, kDraws);
  EXPECT_LT(chi_square(counts, expected_probs(logits, {1, 3, 0}), kDraws), kChi2Bound);
}

// The nucleus computed independently in double precision: tokens by descending logit, until the
// cumulative probability reaches p.
std::vector<int> reference_nucleus(const std::vector<float>& logits, double top_p) {
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)] ||
           (logits[static_cast<size_t>(a)] == logits[static_cast<size_t>(b)] && a < b);
  });
  const double m = logits[static_cast<size_t>(order[0])];
  double sum = 0.0;
  for (float l : logits) sum += std::exp(l - m);
  double cum = 0.0;
  std::vector<int> kept;
  for (int i : order) {
    kept.push_back(i);
    cum += std::exp(logits[static_cast<size_t>(i)] - m) / sum;
    if (cum >= top_p) break;
  }
  // One more token of slack for float-vs-double rounding at the boundary.
  if (kept.size() < order.size()) kept.push_back(order[kept.size()]);
  return kept;
}

TEST(Sampler, TopPOnLargeUnsortedVocabularies) {
  // Large rows take the partial-sort path; the nucleus is small (peaked logits) or larger than
  // the first sorted head of 256 (flat logits).
  for (const float scale : {6.0f, 0.05f}) {
    std::mt19937 gen(1234);
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> logits(8000);
    for (float& l : logits) l = normal(gen);
    SamplingParams p = plain(17);
    p.top_p = 0.9f;
    const std::vector<int> nucleus = reference_nucleus(logits, 0.9);
    if (scale < 1.0f) {
      EXPECT_GT(nucleus.size(), 1000u);
    } else {
      EXPECT_LT(nucleus.size(), 256u);
    }
    std::vector<char> in(logits.size(), 0);
    for (int i : nucleus) in[static_cast<size_t>(i)] = 1;
    Sampler s(p);
    for (int i = 0; i < 300; ++i) {
      const int32_t t = s.sample(logits);
      ASSERT_TRUE(in[static_cast<size_t>(t)]) << "token " << t << " is outside the nucleus";
    }
  }
}

TEST(Sampler, MinPKeepsTokensAboveFractionOfMax) {
  // Probabilities 0.5, 0.3, 0.15, 0.05: min_p 0.2 keeps p >= 0.1.
  const std::vector<float> logits{std::log(0.05f), std::log(0.3f), std::log(0.5f), std::log(0.15f)};
  SamplingParams p = plain(8);
  p.min_p = 0.2f;
  Sampler s(p);
  auto counts = histogram(s, logits, kDraws);
  EXPECT_LT(chi_square(counts, expected_probs(logits, {1, 2, 3}), kDraws), kChi2Bound);

  p.min_p = 0.9f;  // only the best
  Sampler s2(p);
  EXPECT_EQ(histogram(s2, logits, 200)[2], 200);

  p.min_keep = 2;  // ... but at least two
  Sampler s3(p);
  counts = histogram(s3, logits, kDraws);
  EXPECT_LT(chi_square(counts, expected_probs(logits, {1, 2}), kDraws), kChi2Bound);

  p.top_k = 40;  // the sorted path gives the same set
  p.min_keep = 0;
  p.min_p = 0.2f;
  Sampler s4(p);
  counts = histogram(s4, logits, kDraws);
  EXPECT_LT(chi_square(counts, expected_probs(logits, {1, 2, 3}), kDraws), kChi2Bound);
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
  const std::vector<float> logits{0.0f, 1.0f, 0.5f};
  const std::vector<int> all{0, 1, 2};
  double freq_best[3];
  const float temps[3] = {0.5f, 1.0f, 2.0f};
  for (int k = 0; k < 3; ++k) {
    SamplingParams p = plain(21);
    p.temperature = temps[k];
    Sampler s(p);
    const auto counts = histogram(s, logits, kDraws);
    EXPECT_LT(chi_square(counts, expected_probs(logits, all, temps[k]), kDraws), kChi2Bound)
        << "temperature " << temps[k];
    freq_best[k] = static_cast<double>(counts[1]) / kDraws;
  }
  EXPECT_GT(freq_best[0], freq_best[1] + 0.1);   // sharper
  EXPECT_LT(freq_best[2], freq_best[1] - 0.05);  // flatter
}

TEST(Sampler, RepeatPenaltyDividesPositiveMultipliesNegative) {
  SamplingParams p = greedy_params();
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  const std::vector<float> pos{2.0f, 1.5f};
  EXPECT_EQ(s.sample(pos), 0);
  s.accept(0);
  EXPECT_EQ(s.sample(pos), 1);  // 2.0 / 2 = 1.0 < 1.5
  p.repeat_penalty = 1.25f;
  Sampler mild(p);
  mild.accept(0);
  EXPECT_EQ(mild.sample(pos), 0);  // 1.6 > 1.5

  const std::vector<float> neg{-1.0f, -1.2f, -5.0f};
  p.repeat_penalty = 1.1f;
  Sampler n1(p);
  n1.accept(0);
  EXPECT_EQ(n1.sample(neg), 0);  // -1.1 > -1.2
  p.repeat_penalty = 1.3f;
  Sampler n2(p);
  n2.accept(0);
  EXPECT_EQ(n2.sample(neg), 1);  // -1.3 < -1.2 (dividing would have raised it to -0.77)
}

TEST(Sampler, FrequencyAndPresencePenaltiesSubtract) {
  const std::vector<float> logits{3.0f, 2.0f};
  auto run = [&](float freq, float presence, int repeats) {
    SamplingParams p = greedy_params();
    p.frequency_penalty = freq;
    p.presence_penalty = presence;
    Sampler s(p);
    for (int i = 0; i < repeats; ++i) s.accept(0);
    return s.sample(logits);
  };
  EXPECT_EQ(run(0.4f, 0.0f, 2), 0);  // 3 - 2 * 0.4 = 2.2
  EXPECT_EQ(run(0.6f, 0.0f, 2), 1);  // 3 - 2 * 0.6 = 1.8
  EXPECT_EQ(run(0.0f, 0.9f, 3), 0);  // 3 - 0.9, whatever the count
  EXPECT_EQ(run(0.0f, 1.1f, 1), 1);  // 3 - 1.1

  // Measured on a distribution: logits {0, 0}, token 0 seen twice, frequency 0.5 -> -1.
  SamplingParams p = plain(4);
  p.frequency_penalty = 0.5f;
  Sampler s(p);
  s.accept(0);
  s.accept(0);
  const std::vector<float> flat{0.0f, 0.0f};
  const auto counts = histogram(s, flat, kDraws);
  EXPECT_LT(chi_square(counts, expected_probs({-1.0f, 0.0f}, {0, 1}), kDraws), kChi2Bound);
}

TEST(Sampler, PenaltyWindow) {
  const std::vector<float> logits{3.0f, 2.9f, 0.0f};
  SamplingParams p = greedy_params();
  p.repeat_penalty = 2.0f;
  p.penalty_last_n = 2;
  Sampler s(p);
  s.accept(0);
  EXPECT_EQ(s.sample(logits), 1);  // 0 penalized
  s.accept(1);
  EXPECT_EQ(s.sample(logits), 0);  // both penalized: 1.5 vs 1.45
  s.accept(1);
  EXPECT_EQ(s.sample(logits), 0);  // window {1, 1}: 0 left it
  s.accept(0);
  s.accept(2);
  EXPECT_EQ(s.sample(logits), 1);  // window {0, 2}

  p.penalty_last_n = -1;  // whole history
  Sampler all(p);
  all.accept(0);
  for (int i = 0; i < 500; ++i) all.accept(2);
  EXPECT_EQ(all.sample(logits), 1);

  p.penalty_last_n = 0;  // off
  Sampler off(p);
  off.accept(0);
  EXPECT_EQ(off.sample(logits), 0);

  p.penalty_last_n = 64;
  Sampler r(p);
  r.accept(0);
  r.accept(100000);  // outside the row: remembered, never applied
  EXPECT_EQ(r.sample(logits), 1);
  r.reset();
  EXPECT_EQ(r.sample(logits), 0);
  EXPECT_THROW(r.accept(-1), Error);
}

TEST(Sampler, SeedsReproduce) {
  const std::vector<float> logits{0.1f, 0.4f, 0.3f, 0.2f, 0.0f, 0.35f};
  SamplingParams p;  // default chain
  p.temperature = 1.5f;
  p.seed = 42;
  auto seq = [&](Sampler& s) {
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.sample(logits));
    return out;
  };
  Sampler a(p), b(p);
  const auto sa = seq(a);
  EXPECT_EQ(sa, seq(b));
  a.reset();
  EXPECT_EQ(sa, seq(a));
  EXPECT_EQ(a.seed_used(), 42u);
  p.seed = 43;
  Sampler c(p);
  EXPECT_NE(sa, seq(c));
  p.seed = (uint64_t{1} << 40) + 42;  // 64-bit seeds are not cut to their low 32 bits
  Sampler d(p);
  EXPECT_NE(sa, seq(d));
  p.seed = kRandomSeed;
  Sampler r(p);
  EXPECT_NE(r.seed_used(), kRandomSeed);
  p.seed = r.seed_used();  // a drawn seed reproduces its run
  Sampler r2(p);
  EXPECT_EQ(seq(r), seq(r2));
}

// The draw follows llama.cpp's dist sampler: one uniform_real_distribution<double>(0, 1) value
// from mt19937(seed), the first candidate whose running weight reaches sum * u, candidates in
// vocabulary order when no stage sorted them and in descending-logit order after top_k.
TEST(Sampler, DrawMatchesLlamaCppConvention) {
  constexpr uint32_t kSeed = 1234;
  std::mt19937 rng(kSeed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<double> u(200);
  for (double& x : u) x = uniform(rng);

  Sampler flat(plain(kSeed));
  const std::vector<float> four(4, 0.0f);
  for (double x : u) {
    const int expected = std::max(0, static_cast<int>(std::ceil(4.0 * x)) - 1);
    ASSERT_EQ(flat.sample(four), expected);
  }

  // Two tokens, logits {0, 1}: unsorted order [0, 1] picks 0 iff u * (e^-1 + 1) <= e^-1;
  // sorted order [1, 0] picks 1 iff u * (1 + e^-1) <= 1.
  const std::vector<float> two{0.0f, 1.0f};
  const double w0 = std::exp(-1.0f);
  Sampler unsorted(plain(kSeed));
  SamplingParams sp = plain(kSeed);
  sp.top_k = 40;
  Sampler sorted(sp);
  for (double x : u) {
    ASSERT_EQ(unsorted.sample(two), x * (w0 + 1.0) <= w0 ? 0 : 1);
    ASSERT_EQ(sorted.sample(two), x * (1.0 + w0) <= 1.0 ? 1 : 0);
  }

  // A single remaining candidate consumes no draw.
  SamplingParams one = plain(kSeed);
  one.min_p = 0.5f;
  Sampler s(one);
  EXPECT_EQ(s.sample(std::vector<float>{0.0f, 10.0f, 0.0f}), 1);
  EXPECT_EQ(s.sample(four), std::max(0, static_cast<int>(std::ceil(4.0 * u[0])) - 1));
}

TEST(Sampler, VocabularyOfOne) {
  for (SamplingParams p : {greedy_params(), plain(), SamplingParams{}}) {
    p.seed = 3;
    p.repeat_penalty = 1.5f;
    Sampler s(p);
    for (int i = 0; i < 10; ++i) {
      ASSERT_EQ(s.sample(std::vector<float>{-2.0f}), 0);
      s.accept(0);
    }
  }
}

TEST(Sampler, AllMinusInfinityButOne) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> logits(1000, -kInf);
  logits[637] = -50.0f;
  logits[10] = nan;  // NaN counts as -inf
  SamplingParams variants[4] = {greedy_params(), plain(2), SamplingParams{}, plain(2)};
  variants[2].seed = 2;
  variants[3].top_p = 0.5f;
  for (const SamplingParams& p : variants) {
    Sampler s(p);
    for (int i = 0; i < 200; ++i) ASSERT_EQ(s.sample(logits), 637);
  }
}

TEST(Sampler, DegenerateRowsStayInRange) {
  const auto n = 64;
  std::vector<std::vector<float>> rows;
  rows.emplace_back(n, -kInf);  // nothing finite: uniform
  rows.emplace_back(n, std::numeric_limits<float>::quiet_NaN());
  std::vector<float> inf_row(n, 0.0f);
  inf_row[5] = kInf;
  inf_row[9] = kInf;
  rows.push_back(inf_row);
  std::vector<float> huge(n, -1e30f);
  huge[33] = 1e30f;
  rows.push_back(huge);
  SamplingParams cold = plain(5);
  cold.temperature = 1e-30f;  // overflows logits to +-inf
  for (SamplingParams p : {greedy_params(), plain(5), SamplingParams{}, cold}) {
    p.seed = 5;
    Sampler s(p);
    for (const auto& row : rows) {
      for (int i = 0; i < 50; ++i) {
        const int32_t t = s.sample(row);
        ASSERT_GE(t, 0);
        ASSERT_LT(t, n);
        if (row[5] == kInf && p.temperature > 0) {
          ASSERT_TRUE(t == 5 || t == 9);
        }
        if (row[33] == 1e30f) {
          ASSERT_EQ(t, 33);
        }
      }
    }
  }
  // The two +inf tokens share the draws.
  Sampler s(plain(6));
  const auto counts = histogram(s, inf_row, 2000);
  EXPECT_GT(counts[5], 800);
  EXPECT_GT(counts[9], 800);
}

TEST(Sampler, RejectsBadInput) {
  SamplingParams p;
  p.temperature = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(Sampler{p}, Error);
  p = {};
  p.repeat_penalty = 0.0f;
  EXPECT_THROW(Sampler{p}, Error);
  p = {};
  p.penalty_last_n = -2;
  EXPECT_THROW(Sampler{p}, Error);
  p = {};
  p.min_keep = -1;
  EXPECT_THROW(Sampler{p}, Error);
  Sampler ok(SamplingParams{});
  EXPECT_THROW(ok.sample(std::span<const float>()), Error);
}

// Value storage for the lookup-based tests.
using Meta = std::map<std::string, gguf::Value, std::less<>>;

MetadataLookup lookup_in(const Meta& m) {
  return [&m](std::string_view key) -> const gguf::Value* {
    const auto it = m.find(key);
    return it == m.end() ? nullptr : &it->second;
  };
}

TEST(ResolveSampling, DefaultsWithoutMetadata) {
  const SamplingParams p =
      resolve_sampling(UserSampling{}, static_cast<const gguf::Reader*>(nullptr));
  const SamplingParams d;
  EXPECT_EQ(p.temperature, d.temperature);
  EXPECT_EQ(p.top_k, d.top_k);
  EXPECT_EQ(p.top_p, d.top_p);
  EXPECT_EQ(p.min_p, d.min_p);
  EXPECT_EQ(p.penalty_last_n, d.penalty_last_n);
  EXPECT_EQ(p.repeat_penalty, d.repeat_penalty);
  EXPECT_EQ(p.seed, kRandomSeed);
}

TEST(ResolveSampling, UserOverMetadataOverDefaults) {
  Meta m;
  m.emplace("general.sampling.temp", gguf::Value::f32(0.6f));
  m.emplace("general.sampling.top_k", gguf::Value::u32(20));
  m.emplace("general.sampling.top_p", gguf::Value::f64(0.9));
  m.emplace("general.sampling.penalty_last_n", gguf::Value::i32(-1));
  m.emplace("general.sampling.penalty_repeat", gguf::Value::f32(1.1f));
  UserSampling user;
  user.top_k = 50;
  user.seed = 9;
  user.presence_penalty = 0.25f;
  const SamplingParams p = resolve_sampling(user, lookup_in(m));
  EXPECT_EQ(p.temperature, 0.6f);
  EXPECT_EQ(p.top_k, 50);
  EXPECT_EQ(p.top_p, 0.9f);
  EXPECT_EQ(p.min_p, 0.05f);  // no key: default
  EXPECT_EQ(p.penalty_last_n, -1);
  EXPECT_EQ(p.repeat_penalty, 1.1f);
  EXPECT_EQ(p.presence_penalty, 0.25f);
  EXPECT_EQ(p.seed, 9u);

  // An integer where a float is expected is fine; a string is an error unless overridden.
  m.insert_or_assign("general.sampling.min_p", gguf::Value::u8(0));
  EXPECT_EQ(resolve_sampling(user, lookup_in(m)).min_p, 0.0f);
  m.insert_or_assign("general.sampling.temp", gguf::Value::str("hot"));
  EXPECT_THROW(resolve_sampling(user, lookup_in(m)), Error);
  user.temperature = 0.0f;
  EXPECT_EQ(resolve_sampling(user, lookup_in(m)).temperature, 0.0f);
  m.insert_or_assign("general.sampling.top_k", gguf::Value::u64(uint64_t{1} << 40));
  user.top_k.reset();
  EXPECT_THROW(resolve_sampling(user, lookup_in(m)), Error);
}

TEST(ResolveSampling, FromGgufFile) {
  const auto path = test::temp_path("sampling-meta.gguf").string();
  {
    gguf::Writer w(path);
    w.set("general.architecture", gguf::Value::str("llama"));
    w.set("general.sampling.top_k", gguf::Value::i32(64));
    w.set("general.sampling.temp", gguf::Value::f32(0.7f));
    w.set("general.sampling.min_p", gguf::Value::f32(0.0f));
    w.finish();
  }
  const auto reader = gguf::Reader::open(path);
  UserSampling user;
  user.temperature = 1.0f;
  const SamplingParams p = resolve_sampling(user, reader.get());
  EXPECT_EQ(p.top_k, 64);
  EXPECT_EQ(p.temperature, 1.0f);
  EXPECT_EQ(p.min_p, 0.0f);
  EXPECT_EQ(p.top_p, 0.95f);
}

TEST(ResolveSampling, TestdataModelsHaveNoSamplingKeys) {
  STRAW_REQUIRE_TESTDATA();
  const auto reader =
      gguf::Reader::open((test::testdata_dir() / "models" / "qwen2-tiny-q8_0.gguf").string());
  const SamplingParams p = resolve_sampling(UserSampling{}, reader.get());
  EXPECT_EQ(p.top_k, 40);
  EXPECT_EQ(p.temperature, 0.8f);
}

}  // namespace
}  // namespace straw::model
