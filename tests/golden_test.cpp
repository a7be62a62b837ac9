// End-to-end on the CPU: straw's logits for every golden model against exact (float64) math, with
// the bar of shared/testdata/README.md (max_nrmse <= 1.25 x llama.cpp's + 1e-4, top-1 agreement >=
// llama.cpp's - 0.02), and the stories260K greedy continuation equal to llama.cpp's, token for
// token.
#include <gtest/gtest.h>

#include "golden_util.h"
#include "straw/straw.h"

namespace {

using namespace straw::test;

std::unique_ptr<straw::Model> load_on_cpu(const Golden& g) {
  straw::ModelOptions o;
  o.path = (testdata_dir() / "models" / g.model).string();
  o.threads = 2;
  o.device = straw::DeviceChoice::Cpu;
  return straw::Model::load(o);
}

class GoldenLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenLogits, MeetsTheBarAgainstExactMath) {
  STRAW_REQUIRE_TESTDATA();
  const Golden g = load_golden(GetParam());
  auto model = load_on_cpu(g);
  ASSERT_EQ(model->n_vocab(), g.n_vocab);
  ASSERT_EQ(g.exact.size(), g.tokens.size() * size_t(g.n_vocab));
  expect_bar(g, score(g, prefill_logits(*model, g)), GetParam() + " cpu prompt");
}

INSTANTIATE_TEST_SUITE_P(
    Models, GoldenLogits,
    ::testing::Values("llama-tiny-f16", "llama-tiny-iq4_xs", "llama-tiny-q4_k_m", "qwen2-tiny-f32",
                      "qwen2-tiny-iq4_xs", "qwen2-tiny-q4_k_m", "qwen2-tiny-q8_0", "qwen3-tiny-f16",
                      "qwen3-tiny-iq4_xs", "qwen3-tiny-q4_k_m", "stories260K", "stories260K-q8_0"),
    [](const auto& info) {
      std::string n = info.param;
      std::replace(n.begin(), n.end(), '-', '_');
      return n;
    });

TEST(Golden, Stories260KGreedyContinuationMatchesLlamaCpp) {
  STRAW_REQUIRE_TESTDATA();
  const Golden g = load_golden("stories260K");
  ASSERT_FALSE(g.greedy.empty());
  auto model = load_on_cpu(g);
  straw::Session session(*model);
  straw::GenerateOptions opt;
  opt.n_predict = int(g.greedy.size());
  opt.sampling.temperature = 0.0f;
  opt.stop_at_eog = false;
  straw::GenerateResult r = straw::generate(session, g.tokens, opt, nullptr);
  EXPECT_EQ(r.tokens, g.greedy);
}

}  // namespace
