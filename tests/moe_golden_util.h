// The mixture-of-experts golden files (shared/testdata/golden qwen3moe-tiny-*, qwen35moe-tiny-*;
// llama.cpp's logits, no exact-math file) and issue 17's bar against them, for the CPU tests
// (moe_test.cpp) and the GPU ones (cuda_moe_test.cpp): on quantized files the mean nrmse over
// positions <= 2.5e-2 and top-1 agreement >= 0.95; every position above 5e-2 is printed (a
// routing near-tie: see moe_test.cpp).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "golden_util.h"

namespace straw::test {

// A golden model whose reference is llama.cpp's logits (no exact-math file): `exact` holds them.
inline Golden load_reference(const std::string& name) {
  const fs::path dir = testdata_dir() / "golden";
  const std::string j = slurp(dir / (name + ".json"));
  Golden g;
  g.model = json_field(j, "model");
  g.tokens = json_ints(j, "tokens");
  g.n_vocab = std::stoll(json_field(j, "n_vocab"));
  g.ref_max_nrmse = std::stod(json_field(j, "max_nrmse"));  // llama.cpp ub1 vs ub512
  g.ref_top1 = std::stod(json_field(j, "top1"));
  const std::string bytes = slurp(dir / json_field(j, "logits_file"));
  g.exact.resize(bytes.size() / 4);
  std::memcpy(g.exact.data(), bytes.data(), g.exact.size() * 4);
  return g;
}

// nrmse of every position against the reference logits.
inline std::vector<double> nrmse_per_position(const Golden& g,
                                              const std::vector<std::vector<float>>& logits) {
  std::vector<double> out;
  for (size_t p = 0; p < logits.size(); ++p) {
    const float* r = g.exact.data() + p * g.n_vocab;
    const double mean = std::accumulate(r, r + g.n_vocab, 0.0) / double(g.n_vocab);
    double num = 0, den = 0;
    for (int64_t i = 0; i < g.n_vocab; ++i) {
      num += (double(logits[p][size_t(i)]) - r[i]) * (double(logits[p][size_t(i)]) - r[i]);
      den += (r[i] - mean) * (r[i] - mean);
    }
    out.push_back(std::sqrt(num / den));
  }
  return out;
}

inline void expect_moe_bar(const std::string& name, const Golden& g,
                           const std::vector<std::vector<float>>& logits, const std::string& what) {
  const Score s = score(g, logits);
  const std::vector<double> e = nrmse_per_position(g, logits);
  const double mean = std::accumulate(e.begin(), e.end(), 0.0) / double(e.size());
  std::string far;
  for (size_t p = 0; p < e.size(); ++p)
    if (e[p] > 5e-2) {
      char buf[48];
      std::snprintf(buf, sizeof buf, " %zu (%.3f)", p, e[p]);
      far += buf;
    }
  std::printf(
      "%-22s %-20s mean_nrmse %.3e (bar 2.5e-2)  max %.3e (llama.cpp ub1 vs ub512 %.3e)  top1 "
      "%.3f  positions > 5e-2:%s\n",
      name.c_str(), what.c_str(), mean, s.max_nrmse, g.ref_max_nrmse, s.top1,
      far.empty() ? " none" : far.c_str());
  EXPECT_LE(mean, 2.5e-2) << name << " " << what;
  EXPECT_GE(s.top1, 0.95) << name << " " << what;
}

}  // namespace straw::test
