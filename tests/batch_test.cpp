// Batched evaluation of several sessions (straw::eval_batch), the public Sampler with a token
// constraint, log-probabilities, and the session's token history (tokens(), common_prefix()).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>

#include "straw/straw.h"
#include "test_util.h"

namespace {

using namespace straw;

std::unique_ptr<Model> load(const char* name, int ubatch = 512) {
  ModelOptions o;
  o.path = (test::testdata_dir() / "models" / name).string();
  o.threads = 2;
  o.ctx = 256;
  o.ubatch = ubatch;
  o.device = DeviceChoice::Cpu;
  return Model::load(o);
}

std::unique_ptr<Model> load_bundled() {
  ModelOptions o;
  o.path = STRAW_SOURCE_DIR "/models/stories260K.gguf";
  o.threads = 2;
  o.ctx = 256;
  o.device = DeviceChoice::Cpu;
  return Model::load(o);
}

using straw::test::nrmse;

int32_t argmax(std::span<const float> v) {
  return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

// Three prompts of different lengths, evaluated alone and together, then greedy decoding of all
// three in shared steps: the logits agree up to float rounding (a batch of rows may take the GEMM
// kernels where one row takes the matvec kernels).
void check_batch_equals_separate(Model& model, int decode_steps) {
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 5, 9, 13, 17, 21, 25}, {1, 2, 3}, {1, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50}};
  std::vector<std::unique_ptr<Session>> alone, together;
  for (size_t i = 0; i < prompts.size(); ++i) {
    alone.push_back(std::make_unique<Session>(model));
    together.push_back(std::make_unique<Session>(model));
    alone[i]->eval(prompts[i], true);
  }
  std::vector<BatchItem> items;
  for (size_t i = 0; i < prompts.size(); ++i)
    items.push_back({together[i].get(), prompts[i], i == 2});
  eval_batch(items);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(together[i]->n_past(), int64_t(prompts[i].size()));
    EXPECT_LT(nrmse(together[i]->logits(), alone[i]->logits()), 1e-4) << "prompt " << i;
  }
  // Every position of the item that asked for all logits.
  for (size_t t = 0; t < prompts[2].size(); ++t)
    EXPECT_LT(nrmse(together[2]->logits(int(t)), alone[2]->logits(int(t))), 1e-4) << t;

  for (int step = 0; step < decode_steps; ++step) {
    std::vector<int32_t> next(prompts.size());
    items.clear();
    for (size_t i = 0; i < prompts.size(); ++i) {
      next[i] = argmax(alone[i]->logits());
      ASSERT_EQ(argmax(together[i]->logits()), next[i]) << "sequence " << i << " step " << step;
      alone[i]->eval(std::span(&next[i], 1));
      items.push_back({together[i].get(), std::span(&next[i], 1), false});
    }
    eval_batch(items);
    for (size_t i = 0; i < prompts.size(); ++i)
      EXPECT_LT(nrmse(together[i]->logits(), alone[i]->logits()), 1e-4)
          << "sequence " << i << " step " << step;
  }
}

TEST(Batch, SeveralSessionsInOneStepEqualSeparateEvaluation) {
  STRAW_REQUIRE_TESTDATA();
  for (const char* name :
       {"qwen2-tiny-q4_k_m.gguf", "llama-tiny-iq4_xs.gguf", "qwen3-tiny-f16.gguf",
        "qwen35-tiny-f16.gguf", "qwen35-tiny-q4_k_m.gguf"}) {
    SCOPED_TRACE(name);
    auto model = load(name);
    check_batch_equals_separate(*model, 6);
  }
}

TEST(Batch, ItemsLongerThanAStepAreSplit) {
  STRAW_REQUIRE_TESTDATA();
  // A micro-batch of 4 tokens: the 12-token prompt spans several steps shared with the others.
  for (const char* name : {"qwen2-tiny-f32.gguf", "qwen35-tiny-f16.gguf"}) {
    SCOPED_TRACE(name);
    auto model = load(name, 4);
    check_batch_equals_separate(*model, 3);
  }
}

TEST(Batch, GreedyContinuationOfTheBundledModelIsUnchanged) {
  auto model = load_bundled();
  check_batch_equals_separate(*model, 16);
}

TEST(Batch, BadItemsAreRefusedBeforeAnythingIsEvaluated) {
  auto model = load_bundled();
  Session a(*model, 8), b(*model, 8);
  const std::vector<int32_t> ok = {1, 2, 3};
  const std::vector<int32_t> bad = {1, 100000};
  const std::vector<int32_t> long_prompt(9, 1);
  const std::vector<int32_t> empty;
  EXPECT_THROW(eval_batch(std::vector<BatchItem>{{&a, ok}, {&b, bad}}), Error);
  EXPECT_THROW(eval_batch(std::vector<BatchItem>{{&a, ok}, {&b, long_prompt}}), Error);
  EXPECT_THROW(eval_batch(std::vector<BatchItem>{{&a, ok}, {&a, ok}}), Error);
  EXPECT_THROW(eval_batch(std::vector<BatchItem>{{&a, ok}, {&b, empty}}), Error);
  EXPECT_THROW(eval_batch(std::vector<BatchItem>{{nullptr, ok}}), Error);
  EXPECT_EQ(a.n_past(), 0);
  EXPECT_EQ(b.n_past(), 0);
}

TEST(Session, TokensAndCommonPrefixFollowEvalAndTruncate) {
  auto model = load_bundled();
  Session s(*model);
  const std::vector<int32_t> p = {1, 10, 20, 30};
  s.eval(p);
  EXPECT_EQ(std::vector<int32_t>(s.tokens().begin(), s.tokens().end()), p);
  EXPECT_EQ(s.common_prefix(std::vector<int32_t>{1, 10, 21}), 2);
  EXPECT_EQ(s.common_prefix(std::vector<int32_t>{1, 10, 20, 30, 40}), 4);
  EXPECT_EQ(s.common_prefix(std::vector<int32_t>{}), 0);
  s.truncate(2);
  EXPECT_EQ(s.n_past(), 2);
  EXPECT_EQ(s.common_prefix(p), 2);
  s.reset();
  EXPECT_EQ(s.tokens().size(), 0u);
}

// Allows only even token ids (and counts what it was asked).
struct EvenTokens : TokenConstraint {
  int allows_calls = 0, mask_calls = 0, accepted = 0;
  bool allows(int32_t t) override {
    ++allows_calls;
    return t % 2 == 0;
  }
  void mask(std::span<uint8_t> allowed) override {
    ++mask_calls;
    for (size_t i = 1; i < allowed.size(); i += 2) allowed[i] = 0;
  }
  void accept(int32_t) override { ++accepted; }
  bool done() const override { return false; }
};

TEST(Sampler, ConstraintRestrictsEveryDrawAndSeedsReproduce) {
  auto model = load_bundled();
  Session s(*model);
  s.eval(model->tokenize("Once upon a time"));
  SamplingOptions so;
  so.temperature = 1.5f;
  so.top_k = 0;
  so.top_p = 1.0f;
  so.min_p = 0.0f;
  so.seed = 7;
  Sampler a(*model, so), b(*model, so);
  EXPECT_EQ(a.seed(), 7u);
  EvenTokens even;
  for (int i = 0; i < 200; ++i) {
    const int32_t t = a.sample(s.logits(), &even);
    EXPECT_EQ(t % 2, 0);
    EXPECT_EQ(b.sample(s.logits(), nullptr) >= 0, true);
  }
  EXPECT_EQ(even.allows_calls, 200);
  EXPECT_GT(even.mask_calls, 0);  // at temperature 1.5 some draws are odd and get redrawn
  // The same seed and constraint reproduce the same draws.
  Sampler c(*model, so), d(*model, so);
  EvenTokens e1, e2;
  for (int i = 0; i < 50; ++i) EXPECT_EQ(c.sample(s.logits(), &e1), d.sample(s.logits(), &e2));
}

TEST(Sampler, GenerateWithAConstraintOnlyProducesAllowedTokens) {
  auto model = load_bundled();
  Session s(*model);
  EvenTokens even;
  GenerateOptions g;
  g.n_predict = 24;
  g.sampling.seed = 3;
  g.constraint = &even;
  GenerateResult r = generate(s, model->tokenize("Once upon a time"), g, nullptr);
  for (int32_t t : r.tokens) EXPECT_EQ(t % 2, 0);
  EXPECT_EQ(even.accepted, int(r.tokens.size()));
}

TEST(Sampler, LogitBiasBansAndFavoursTokens) {
  auto model = load_bundled();
  Session s(*model);
  s.eval(model->tokenize("Once upon a time"));
  const int32_t best = argmax(s.logits());
  SamplingOptions so;
  so.temperature = 0.0f;
  so.logit_bias = {{best, -std::numeric_limits<float>::infinity()}};
  Sampler banned(*model, so);
  EXPECT_NE(banned.sample(s.logits()), best);
  so.logit_bias = {{42, 1000.0f}};
  Sampler favoured(*model, so);
  EXPECT_EQ(favoured.sample(s.logits()), 42);
  so.logit_bias = {{100000, 1.0f}};
  EXPECT_THROW(Sampler(*model, so), Error);
}

TEST(Logprobs, TopLogprobsAreTheLogSoftmaxInOrder) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f};
  double z = 0;
  for (float v : logits) z += std::exp(double(v));
  const auto top = top_logprobs(logits, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].token, 1);  // tie with 3: lower id first
  EXPECT_EQ(top[1].token, 3);
  EXPECT_EQ(top[2].token, 2);
  EXPECT_NEAR(top[0].logprob, 3.0 - std::log(z), 1e-6);
  EXPECT_NEAR(token_logprob(logits, 4), -1.0 - std::log(z), 1e-6);
  EXPECT_EQ(top_logprobs(logits, 10).size(), logits.size());
  EXPECT_THROW(token_logprob(logits, 5), Error);
}

}  // namespace
