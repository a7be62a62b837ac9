// End-to-end: straw's logits for every golden model against exact (float64) math, with the bar
// of shared/testdata/README.md (max_nrmse <= 1.25 x llama.cpp's + 1e-4, top-1 agreement >= llama.cpp's
// - 0.02), and the stories260K greedy continuation equal to llama.cpp's, token for token.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "straw/straw.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The golden .json files are flat and machine-written; these two lookups are all we need.
std::string json_field(const std::string& json, const std::string& key) {
  std::smatch m;
  std::regex re("\"" + key + "\"\\s*:\\s*(\"[^\"]*\"|\\[[^\\]]*\\]|[-0-9.eE+]+)");
  if (!std::regex_search(json, m, re)) return "";
  std::string v = m[1];
  if (!v.empty() && v.front() == '"') v = v.substr(1, v.size() - 2);
  return v;
}

std::vector<int32_t> json_ints(const std::string& json, const std::string& key) {
  std::string v = json_field(json, key);
  std::vector<int32_t> out;
  std::string digits;
  for (char c : v) {
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '-') digits += c;
    else if (!digits.empty()) {
      out.push_back(std::stoi(digits));
      digits.clear();
    }
  }
  return out;
}

std::vector<float> read_f32(const fs::path& p) {
  std::string bytes = slurp(p);
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

struct Golden {
  std::string name, model;
  std::vector<int32_t> tokens, greedy;
  int64_t n_vocab;
  double ref_max_nrmse, ref_top1;
  fs::path exact;
};

std::vector<Golden> load_goldens() {
  std::vector<Golden> out;
  fs::path dir = straw::test::testdata_dir() / "golden";
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".json") continue;
    std::string j = slurp(e.path());
    Golden g;
    g.name = e.path().stem().string();
    g.model = json_field(j, "model");
    g.tokens = json_ints(j, "tokens");
    g.greedy = json_ints(j, "greedy_tokens");
    g.n_vocab = std::stoll(json_field(j, "n_vocab"));
    g.ref_max_nrmse = std::stod(json_field(j, "max_nrmse"));
    g.ref_top1 = std::stod(json_field(j, "top1"));
    g.exact = dir / json_field(j, "exact_logits_file");
    out.push_back(g);
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.name < b.name; });
  return out;
}

class GoldenLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenLogits, MeetsTheBarAgainstExactMath) {
  STRAW_REQUIRE_TESTDATA();
  std::vector<Golden> all = load_goldens();
  auto it = std::find_if(all.begin(), all.end(), [&](auto& g) { return g.name == GetParam(); });
  ASSERT_NE(it, all.end()) << "no golden file " << GetParam();
  const Golden& g = *it;

  auto model = straw::Model::load(
      {.path = (straw::test::testdata_dir() / "models" / g.model).string(), .threads = 2});
  ASSERT_EQ(model->n_vocab(), g.n_vocab);
  straw::Session session(*model);
  session.eval(g.tokens, /*all_logits=*/true);

  std::vector<float> exact = read_f32(g.exact);
  ASSERT_EQ(exact.size(), g.tokens.size() * size_t(g.n_vocab));
  double max_nrmse = 0;
  int top1 = 0;
  for (size_t p = 0; p < g.tokens.size(); ++p) {
    std::span<const float> a = session.logits(int(p));
    const float* r = exact.data() + p * g.n_vocab;
    double mean = 0;
    for (int64_t i = 0; i < g.n_vocab; ++i) mean += r[i];
    mean /= double(g.n_vocab);
    double num = 0, den = 0;
    for (int64_t i = 0; i < g.n_vocab; ++i) {
      num += (double(a[i]) - r[i]) * (double(a[i]) - r[i]);
      den += (r[i] - mean) * (r[i] - mean);
    }
    max_nrmse = std::max(max_nrmse, std::sqrt(num / den));
    top1 += std::max_element(a.begin(), a.end()) - a.begin() ==
            std::max_element(r, r + g.n_vocab) - r;
  }
  const double top1_frac = double(top1) / double(g.tokens.size());
  std::printf("%-24s max_nrmse %.3e (llama.cpp %.3e, ratio %.2f)  top1 %.3f (llama.cpp %.3f)\n",
              g.name.c_str(), max_nrmse, g.ref_max_nrmse, max_nrmse / g.ref_max_nrmse, top1_frac,
              g.ref_top1);
  EXPECT_LE(max_nrmse, 1.25 * g.ref_max_nrmse + 1e-4);
  EXPECT_GE(top1_frac, g.ref_top1 - 0.02);
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
  for (const Golden& g : load_goldens()) {
    if (g.name != "stories260K") continue;
    auto model = straw::Model::load(
        {.path = (straw::test::testdata_dir() / "models" / g.model).string(), .threads = 2});
    straw::Session session(*model);
    straw::GenerateOptions opt;
    opt.n_predict = int(g.greedy.size());
    opt.sampling.temperature = 0.0f;
    opt.stop_at_eog = false;
    straw::GenerateResult r = straw::generate(session, g.tokens, opt, nullptr);
    EXPECT_EQ(r.tokens, g.greedy);
    return;
  }
  FAIL() << "stories260K.json not found in the golden folder";
}

}  // namespace
