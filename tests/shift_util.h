// Context shift against a fresh evaluation (context_shift_test.cpp, yarn_golden_test.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "straw/straw.h"
#include "test_util.h"

namespace straw::test {

// Evaluates tokens[0, n_before), shifts (keeping n_keep, dropping n_discard), evaluates the next
// n_after tokens; a fresh session evaluates the kept tokens then the same n_after tokens. Returns
// the max nrmse of the shifted session's n_after rows of logits against the fresh one's.
inline double shift_vs_fresh(Model& model, std::span<const int32_t> tokens, int64_t n_before,
                             int64_t n_keep, int64_t n_discard, int64_t n_after) {
  const std::span<const int32_t> after = tokens.subspan(size_t(n_before), size_t(n_after));
  Session shifted(model);
  shifted.eval(tokens.first(size_t(n_before)));
  shifted.shift(n_keep, n_discard);
  shifted.eval(after, /*all_logits=*/true);

  std::vector<int32_t> kept(tokens.begin(), tokens.begin() + n_keep);
  kept.insert(kept.end(), tokens.begin() + n_keep + n_discard, tokens.begin() + n_before);
  Session fresh(model);
  fresh.eval(kept);
  fresh.eval(after, /*all_logits=*/true);
  double worst = 0;
  for (int i = 0; i < int(n_after); ++i)
    worst = std::max(worst, nrmse(shifted.logits(i), fresh.logits(i)));
  return worst;
}

}  // namespace straw::test
