// Shared by the CPU and GPU golden tests: the golden files of shared/testdata (prompt ids,
// llama.cpp's distance from exact math, exact logits) and the bar of its README.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "straw/straw.h"
#include "test_util.h"

namespace straw::test {

namespace fs = std::filesystem;

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string json_field(const std::string& json, const std::string& key) {
  std::smatch m;
  std::regex re("\"" + key + "\"\\s*:\\s*(\"[^\"]*\"|\\[[^\\]]*\\]|[-0-9.eE+]+)");
  if (!std::regex_search(json, m, re)) return "";
  std::string v = m[1];
  if (!v.empty() && v.front() == '"') v = v.substr(1, v.size() - 2);
  return v;
}

inline std::vector<int32_t> json_ints(const std::string& json, const std::string& key) {
  std::vector<int32_t> out;
  std::string digits;
  for (char c : json_field(json, key) + " ") {
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '-') {
      digits += c;
    } else if (!digits.empty()) {
      out.push_back(std::stoi(digits));
      digits.clear();
    }
  }
  return out;
}

struct Golden {
  std::string model;
  std::vector<int32_t> tokens, greedy;
  int64_t n_vocab = 0;
  double ref_max_nrmse = 0, ref_top1 = 0;
  std::vector<float> exact;  // [tokens][n_vocab]
};

inline Golden load_golden(const std::string& name) {
  const fs::path dir = straw::test::testdata_dir() / "golden";
  const std::string j = slurp(dir / (name + ".json"));
  Golden g;
  g.model = json_field(j, "model");
  g.tokens = json_ints(j, "tokens");
  g.greedy = json_ints(j, "greedy_tokens");
  g.n_vocab = std::stoll(json_field(j, "n_vocab"));
  g.ref_max_nrmse = std::stod(json_field(j, "max_nrmse"));
  g.ref_top1 = std::stod(json_field(j, "top1"));
  const std::string bytes = slurp(dir / json_field(j, "exact_logits_file"));
  g.exact.resize(bytes.size() / 4);
  std::memcpy(g.exact.data(), bytes.data(), g.exact.size() * 4);
  return g;
}

// A golden model whose reference is llama.cpp's logits (no exact-math file: qwen35*, qwen3moe*).
// `exact` then holds llama.cpp's logits and ref_max_nrmse / ref_top1 the distance of llama.cpp's
// own token-by-token run from its batched run (llamacpp_ub1_vs_ub512).
inline Golden load_llamacpp_golden(const std::string& name) {
  const fs::path dir = straw::test::testdata_dir() / "golden";
  const std::string j = slurp(dir / (name + ".json"));
  Golden g;
  g.model = json_field(j, "model");
  g.tokens = json_ints(j, "tokens");
  g.greedy = json_ints(j, "greedy_tokens");
  g.n_vocab = std::stoll(json_field(j, "n_vocab"));
  g.ref_max_nrmse = std::stod(json_field(j, "max_nrmse"));
  g.ref_top1 = std::stod(json_field(j, "top1"));
  const std::string bytes = slurp(dir / json_field(j, "logits_file"));
  g.exact.resize(bytes.size() / 4);
  std::memcpy(g.exact.data(), bytes.data(), g.exact.size() * 4);
  return g;
}

// Distances of per-position logits from the exact ones: max nrmse and top-1 agreement.
struct Score {
  double max_nrmse = 0;
  double top1 = 0;
};

inline Score score(const Golden& g, const std::vector<std::vector<float>>& logits) {
  Score s;
  int agree = 0;
  for (size_t p = 0; p < logits.size(); ++p) {
    const std::vector<float>& a = logits[p];
    const float* r = g.exact.data() + p * g.n_vocab;
    double mean = 0;
    for (int64_t i = 0; i < g.n_vocab; ++i) mean += r[i];
    mean /= double(g.n_vocab);
    double num = 0, den = 0;
    for (int64_t i = 0; i < g.n_vocab; ++i) {
      num += (double(a[i]) - r[i]) * (double(a[i]) - r[i]);
      den += (r[i] - mean) * (r[i] - mean);
    }
    s.max_nrmse = std::max(s.max_nrmse, std::sqrt(num / den));
    agree +=
        std::max_element(a.begin(), a.end()) - a.begin() == std::max_element(r, r + g.n_vocab) - r;
  }
  s.top1 = double(agree) / double(logits.size());
  return s;
}

// Logits of every prompt position, the prompt evaluated in one call.
inline std::vector<std::vector<float>> prefill_logits(Model& m, const Golden& g) {
  Session s(m);
  s.eval(g.tokens, /*all_logits=*/true);
  std::vector<std::vector<float>> out;
  for (size_t p = 0; p < g.tokens.size(); ++p) {
    std::span<const float> l = s.logits(int(p));
    out.emplace_back(l.begin(), l.end());
  }
  return out;
}

// Logits of every prompt position, the prompt evaluated one token per call (the decode path).
inline std::vector<std::vector<float>> token_by_token(Model& m, const Golden& g) {
  Session s(m);
  std::vector<std::vector<float>> out;
  for (int32_t t : g.tokens) {
    s.eval(std::span<const int32_t>(&t, 1));
    out.emplace_back(s.logits().begin(), s.logits().end());
  }
  return out;
}

inline void expect_bar(const Golden& g, const Score& s, const std::string& what) {
  std::printf("%-34s max_nrmse %.3e (llama.cpp %.3e, ratio %.2f)  top1 %.3f (llama.cpp %.3f)\n",
              what.c_str(), s.max_nrmse, g.ref_max_nrmse, s.max_nrmse / g.ref_max_nrmse, s.top1,
              g.ref_top1);
  EXPECT_LE(s.max_nrmse, 1.25 * g.ref_max_nrmse + 1e-4) << what;
  EXPECT_GE(s.top1, g.ref_top1 - 0.02) << what;
}

// Skips when the model is not in the test data (the GPU check carries a subset that fits its
// transfer limit).
#define STRAW_REQUIRE_MODEL(g)                                                              \
  do {                                                                                      \
    if (!std::filesystem::exists(straw::test::testdata_dir() / "models" / (g).model))       \
      GTEST_SKIP() << (g).model << " is not in " << straw::test::testdata_dir() / "models"; \
  } while (0)

}  // namespace straw::test
