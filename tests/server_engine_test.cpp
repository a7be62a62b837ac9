// straw serve's engine: batched slots give the same greedy text as one-at-a-time generation, the
// prompt cache reuses prefixes without changing results, stop conditions, seeds, cancellation.
#include <gtest/gtest.h>

#include <future>

#include "engine.h"
#include "test_util.h"

namespace {

using namespace straw;
using namespace straw::serve;
using namespace std::chrono_literals;

std::unique_ptr<Model> bundled(int ubatch = 512) {
  ModelOptions o;
  o.path = STRAW_SOURCE_DIR "/models/stories260K.gguf";
  o.threads = 2;
  o.ctx = 512;
  o.ubatch = ubatch;
  o.device = DeviceChoice::Cpu;
  return Model::load(o);
}

struct Result {
  std::string text;
  GenEvent done;
};

// Reads a request's events to the end.
Result collect(Request& r) {
  Result out;
  GenEvent e;
  for (;;) {
    if (!r.next(e, 30s)) {
      ADD_FAILURE() << "no event within 30 s";
      return out;
    }
    if (e.kind == GenEvent::Kind::Error) {
      ADD_FAILURE() << "error " << e.status << ": " << e.error;
      return out;
    }
    out.text += e.text;
    if (e.kind == GenEvent::Kind::Done) {
      out.done = std::move(e);
      return out;
    }
  }
}

GenRequest greedy(const Model& m, const std::string& prompt, int64_t n) {
  GenRequest g;
  g.prompt = m.tokenize(prompt);
  g.max_tokens = n;
  g.sampling.temperature = 0.0f;
  return g;
}

std::string generate_alone(Model& m, const std::string& prompt, int n) {
  Session s(m);
  GenerateOptions o;
  o.n_predict = n;
  o.sampling.temperature = 0.0f;
  std::string text;
  generate(s, m.tokenize(prompt), o, [&](std::string_view t, int32_t) {
    text += t;
    return true;
  });
  return text;
}

const char* const kPrompts[] = {"Once upon a time", "The little dog", "One day, Lily went",
                                "Tom and Sue were"};

// The expected texts are made before an engine exists: a model's sessions must not evaluate
// concurrently, and the engine thread evaluates while requests run.
TEST(ServerEngine, ConcurrentGreedyRequestsEqualOneAtATime) {
  auto model = bundled();
  std::vector<std::string> expected, expected_short;
  for (const char* p : kPrompts) {
    expected.push_back(generate_alone(*model, p, 40));
    expected_short.push_back(generate_alone(*model, p, 10));
  }
  auto engine = std::make_unique<Engine>(*model, EngineOptions{.parallel = 4});
  std::vector<std::shared_ptr<Request>> reqs;
  for (const char* p : kPrompts) reqs.push_back(engine->submit(greedy(*model, p, 40)));
  for (size_t i = 0; i < reqs.size(); ++i) {
    const Result r = collect(*reqs[i]);
    EXPECT_EQ(r.text, expected[i]) << kPrompts[i];
    EXPECT_EQ(r.done.finish_reason, "length");
    EXPECT_EQ(r.done.usage.completion_tokens, 40);
    EXPECT_EQ(r.done.usage.prompt_tokens, int64_t(model->tokenize(kPrompts[i]).size()));
  }
  engine.reset();
  // More requests than slots wait in the queue and still complete.
  Engine one(*model, {.parallel = 1});
  reqs.clear();
  for (const char* p : kPrompts) reqs.push_back(one.submit(greedy(*model, p, 10)));
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(collect(*reqs[i]).text, expected_short[i]);
}

TEST(ServerEngine, LongPromptsArePrefilledInChunksBetweenDecodes) {
  // A 4-token micro-batch and 2-token prefill chunks: prompts take many steps interleaved with
  // the other slots' decoding; the text is the same.
  auto model = bundled(4);
  std::vector<std::string> expected;
  for (int i = 0; i < 3; ++i) expected.push_back(generate_alone(*model, kPrompts[i], 24));
  Engine engine(*model, {.parallel = 3, .prefill_chunk = 2});
  std::vector<std::shared_ptr<Request>> reqs;
  for (int i = 0; i < 3; ++i) reqs.push_back(engine.submit(greedy(*model, kPrompts[i], 24)));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(collect(*reqs[size_t(i)]).text, expected[size_t(i)]);
}

// Speculative decoding in the engine: each slot verifies its proposals inside the shared step;
// greedy text is unchanged, with prompt lookup and with a draft model (the model as its own
// draft, which accepts everything), also with a micro-batch too small for every proposal.
TEST(ServerEngine, SpeculativeDecodingGivesTheSameGreedyText) {
  const std::string repeat =
      "Once upon a time, there was a little girl named Lily. She loved to play. Once upon a time,";
  for (int ubatch : {512, 6}) {
    SCOPED_TRACE(ubatch);
    auto model = bundled(ubatch);
    auto draft = bundled(ubatch);
    std::vector<std::string> prompts(std::begin(kPrompts), std::end(kPrompts));
    prompts.push_back(repeat);
    std::vector<std::string> expected;
    for (const std::string& p : prompts) expected.push_back(generate_alone(*model, p, 40));
    std::vector<SpeculativeOptions> methods(2);
    methods[0].method = SpecMethod::Ngram;
    methods[1].method = SpecMethod::Draft;
    methods[1].draft_model = draft.get();
    methods[1].adaptive = false;
    methods[1].draft_max = 4;
    methods[1].draft_p_min = 0.0f;
    for (const SpeculativeOptions& spec : methods) {
      SCOPED_TRACE(int(spec.method));
      Engine engine(*model, {.parallel = 3, .speculative = spec});
      std::vector<std::shared_ptr<Request>> reqs;
      for (const std::string& p : prompts) reqs.push_back(engine.submit(greedy(*model, p, 40)));
      int64_t proposed = 0, accepted = 0;
      for (size_t i = 0; i < reqs.size(); ++i) {
        const Result r = collect(*reqs[i]);
        EXPECT_EQ(r.text, expected[i]) << prompts[i];
        EXPECT_EQ(r.done.usage.completion_tokens, 40);
        proposed += r.done.timings.draft_n;
        accepted += r.done.timings.draft_n_accepted;
      }
      EXPECT_GT(proposed, 0);
      if (spec.method == SpecMethod::Draft) {
        EXPECT_EQ(accepted, proposed);
      }
      // A step's counters are added after its Done events went out: stop the loop to read them.
      engine.shutdown(0ms);
      const EngineStats st = engine.stats();
      EXPECT_EQ(st.spec_proposed, uint64_t(proposed));
      EXPECT_EQ(st.spec_accepted, uint64_t(accepted));
      EXPECT_EQ(st.completion_tokens, 40u * prompts.size());
    }
  }
}

// With temperature > 0 the slots draw through speculative sampling (the draft's distribution
// against the target's); stop conditions inside an accepted run of proposals end the request there,
// and the slot's cache holds exactly the prompt and the generated tokens (the rejected rows left).
TEST(ServerEngine, SpeculativeSamplingAndStopsInsideAcceptedProposals) {
  auto model = bundled();
  auto draft = bundled();
  SpeculativeOptions spec;
  spec.method = SpecMethod::Draft;
  spec.draft_model = draft.get();
  spec.adaptive = false;
  spec.draft_max = 6;
  spec.draft_p_min = 0.0f;
  Engine engine(*model, {.parallel = 2, .speculative = spec});
  std::vector<std::shared_ptr<Request>> reqs;
  for (int i = 0; i < 4; ++i) {
    GenRequest g = greedy(*model, kPrompts[i % 2], 37);
    g.sampling.temperature = 0.9f;
    g.sampling.seed = uint64_t(i);
    g.ignore_eos = true;
    reqs.push_back(engine.submit(std::move(g)));
  }
  for (auto& r : reqs) {
    const Result res = collect(*r);
    EXPECT_EQ(res.done.usage.completion_tokens, 37);
    EXPECT_EQ(res.done.finish_reason, "length");
    EXPECT_GT(res.done.timings.draft_n, 0);
  }
  // A stop string in the greedy text: the request ends at it although its tokens were proposed
  // (the model as its own draft proposes the whole continuation).
  const std::string full = generate_alone(*model, kPrompts[0], 40);
  ASSERT_GT(full.size(), 20u);
  GenRequest g = greedy(*model, kPrompts[0], 40);
  const std::string stop = full.substr(12, 5);
  g.stop = {stop};
  const Result res = collect(*engine.submit(std::move(g)));
  EXPECT_EQ(res.text, full.substr(0, full.find(stop)));
  EXPECT_EQ(res.done.finish_reason, "stop");
}

TEST(ServerEngine, PromptCacheReusesTheLongestPrefixAndChangesNothing) {
  auto model = bundled();
  Engine engine(*model, {.parallel = 2});
  const std::string turn1 = "Once upon a time, there was a little girl named Lily.";
  const Result a = collect(*engine.submit(greedy(*model, turn1, 20)));
  EXPECT_EQ(a.done.usage.cached_tokens, 0);
  // The next turn re-sends the history: only the new suffix is evaluated.
  const std::string turn2 = turn1 + a.text + " She liked to";
  const Result b = collect(*engine.submit(greedy(*model, turn2, 20)));
  EXPECT_GE(b.done.usage.cached_tokens, int64_t(model->tokenize(turn1).size()));
  EXPECT_EQ(b.text, generate_alone(*model, turn2, 20));
  // The very same prompt again: everything but its last token is reused.
  const Result c = collect(*engine.submit(greedy(*model, turn2, 20)));
  EXPECT_EQ(c.done.usage.cached_tokens, int64_t(model->tokenize(turn2).size()) - 1);
  EXPECT_EQ(c.text, b.text);

  Engine no_cache(*model, {.parallel = 2, .cache_prompt = false});
  collect(*no_cache.submit(greedy(*model, turn1, 5)));
  EXPECT_EQ(collect(*no_cache.submit(greedy(*model, turn1, 5))).done.usage.cached_tokens, 0);
}

TEST(ServerEngine, StopStringsAndEndOfGeneration) {
  auto model = bundled();
  const std::string full = generate_alone(*model, "Once upon a time", 40);
  Engine engine(*model, {.parallel = 2});
  const size_t cut = full.find(" girl");
  ASSERT_NE(cut, std::string::npos) << full;
  GenRequest g = greedy(*model, "Once upon a time", 40);
  g.stop = {" girl", "never appears"};
  const Result r = collect(*engine.submit(std::move(g)));
  EXPECT_EQ(r.text, full.substr(0, cut));
  EXPECT_EQ(r.done.finish_reason, "stop");
  // Without a limit, generation ends at the model's end of text (stories end with EOS) or the
  // context: either way a finish reason is given.
  const Result open = collect(*engine.submit(greedy(*model, "Once upon a time", -1)));
  EXPECT_TRUE(open.done.finish_reason == "stop" || open.done.finish_reason == "length");
}

// --context-shift: a slot whose context fills drops the oldest half of its tokens after n_keep and
// goes on; without it the request finishes with "length" at the context.
TEST(ServerEngine, ContextShiftGoesOnPastTheContext) {
  auto model = bundled();
  {
    Engine engine(*model, {.parallel = 2, .ctx = 48});
    const Result r = collect(*engine.submit(greedy(*model, "Once upon a time", 200)));
    EXPECT_EQ(r.done.finish_reason, "length");
    EXPECT_LT(r.done.usage.completion_tokens, 48);
    EXPECT_EQ(r.done.usage.context_shifts, 0);
  }
  Engine engine(*model, {.parallel = 2, .ctx = 48, .context_shift = true, .n_keep = 4});
  GenRequest g = greedy(*model, "Once upon a time", 150);
  g.ignore_eos = true;
  const Result r = collect(*engine.submit(std::move(g)));
  EXPECT_EQ(r.done.finish_reason, "length");
  EXPECT_EQ(r.done.usage.completion_tokens, 150);
  EXPECT_GE(r.done.usage.context_shifts, 3);
  EXPECT_THROW(Engine(*model, {.ctx = 48, .context_shift = true, .n_keep = 48}), Error);
}

TEST(ServerEngine, SeededSamplingReproducesAndLogprobsComeWithTokens) {
  auto model = bundled();
  Engine engine(*model, {.parallel = 2});
  auto sampled = [&](uint64_t seed) {
    GenRequest g;
    g.prompt = model->tokenize("Once upon a time");
    g.max_tokens = 30;
    g.sampling.temperature = 1.0f;
    g.sampling.seed = seed;
    g.top_logprobs = 2;
    return engine.submit(std::move(g));
  };
  auto r1 = sampled(11), r2 = sampled(11), r3 = sampled(12);
  std::vector<TokenLogprobs> lps;
  std::string t1;
  GenEvent e;
  for (;;) {
    ASSERT_TRUE(r1->next(e, 30s));
    t1 += e.text;
    lps.insert(lps.end(), e.logprobs.begin(), e.logprobs.end());
    if (e.kind == GenEvent::Kind::Done) break;
  }
  EXPECT_EQ(t1, collect(*r2).text);
  EXPECT_NE(t1, collect(*r3).text);
  ASSERT_EQ(lps.size(), 30u);
  for (const TokenLogprobs& lp : lps) {
    EXPECT_LE(lp.chosen.logprob, 0.0f);
    ASSERT_EQ(lp.top.size(), 2u);
    EXPECT_GE(lp.top[0].logprob, lp.top[1].logprob);
    EXPECT_GE(lp.top[0].logprob, lp.chosen.logprob);
  }
}

TEST(ServerEngine, ACancelledRequestFreesItsSlot) {
  auto model = bundled();
  Engine engine(*model, {.parallel = 1});
  auto long_one = engine.submit(greedy(*model, "Once upon a time", -1));
  GenEvent e;
  ASSERT_TRUE(long_one->next(e, 30s));
  long_one->cancel();
  // The only slot is free again: the next request completes.
  const Result r = collect(*engine.submit(greedy(*model, "The little dog", 8)));
  EXPECT_EQ(r.done.usage.completion_tokens, 8);
  // Counted as cancelled, unless it had reached its end of text before cancel() (the bundled
  // model generates thousands of tokens a second: a test thread preempted for a few ms sees it).
  bool ended = false;
  while (long_one->next(e, 0ms))
    if (e.kind == GenEvent::Kind::Done) ended = true;
  if (!ended) {
    EXPECT_GE(engine.stats().requests_cancelled, 1u);
  }
}

TEST(ServerEngine, RefusesWhatCannotRun) {
  auto model = bundled();
  Engine engine(*model, {.parallel = 1, .ctx = 16});
  GenRequest empty;
  EXPECT_ANY_THROW(engine.submit(std::move(empty)));
  EXPECT_ANY_THROW(engine.submit(greedy(*model, std::string(200, 'x'), 4)));
  // A request longer than the room left ends with "length" at the context.
  const Result r = collect(*engine.submit(greedy(*model, "Once upon a time", 1000)));
  EXPECT_EQ(r.done.finish_reason, "length");
  // The last token is sampled from the logits of position 15 and never needs a cache row.
  EXPECT_EQ(r.done.usage.prompt_tokens + r.done.usage.completion_tokens, 17);
  engine.shutdown(0ms);
  EXPECT_ANY_THROW(engine.submit(greedy(*model, "Once", 4)));
}

}  // namespace
