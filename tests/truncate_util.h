// The truncate-and-continue check of a model with recurrent state (qwen35), shared by the CPU and
// GPU tests: a session cut back (between checkpoints, at one, before all, after other tokens,
// inside a prompt's last step, reset) and continued gives exactly the logits of a fresh session
// that evaluated the same tokens in the same batches.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <span>
#include <vector>

#include "golden_util.h"
#include "straw/straw.h"

namespace straw::test {

// g.tokens split in half: the first half and 10 more tokens as prompts (checkpoints at both), the
// rest one by one; then the cuts. Any backend: the same kernels on the same shapes, bit for bit.
inline void expect_truncation_continues_as_fresh(straw::Model& model, const Golden& g) {
  const std::span<const int32_t> all(g.tokens);
  const size_t n = all.size(), half = n / 2;
  auto fresh = [&](std::vector<size_t> cuts) {
    straw::Session s(model);
    size_t done = 0;
    for (size_t c : cuts) {
      s.eval(all.subspan(done, c - done));
      done = c;
    }
    s.eval(all.subspan(done), /*all_logits=*/true);
    std::vector<float> v;
    for (size_t p = 0; p < n - done; ++p)
      v.insert(v.end(), s.logits(int(p)).begin(), s.logits(int(p)).end());
    return v;
  };
  auto continued = [&](straw::Session& s, size_t keep) {
    s.truncate(int64_t(keep));
    EXPECT_EQ(s.n_past(), int64_t(keep));
    s.eval(all.subspan(keep), /*all_logits=*/true);
    std::vector<float> v;
    for (size_t p = 0; p < n - keep; ++p)
      v.insert(v.end(), s.logits(int(p)).begin(), s.logits(int(p)).end());
    return v;
  };
  straw::Session s(model);
  s.eval(all.first(half));        // a prompt: checkpoint at `half`
  s.eval(all.subspan(half, 10));  // another: checkpoint at half + 10
  for (size_t i = half + 10; i < n; ++i) s.eval(all.subspan(i, 1));  // generated tokens
  // Between checkpoints: restored at `half`, then 5 tokens evaluated again as one batch.
  EXPECT_EQ(continued(s, half + 5), fresh({half, half + 5})) << "between checkpoints";
  // At a checkpoint: restored, nothing evaluated again.
  EXPECT_EQ(continued(s, half), fresh({half})) << "at a checkpoint";
  // Before every checkpoint: from the empty state, 3 tokens again.
  EXPECT_EQ(continued(s, 3), fresh({3})) << "before every checkpoint";
  // Other tokens after a cut, then back and the true ones.
  s.truncate(int64_t(half));
  const std::vector<int32_t> other(20, 7);
  s.eval(other);
  EXPECT_EQ(continued(s, half), fresh({half})) << "after other tokens";
  // A server's pattern: the same prompt again, cut to one before its end (the checkpoint taken
  // inside the prompt's last step: the snapshots of the conv and delta-rule kernels) and its last
  // token evaluated again for the logits.
  {
    straw::Session a(model), b(model);
    a.eval(all.first(half));
    a.truncate(int64_t(half) - 1);
    a.eval(all.subspan(half - 1, 1));
    b.eval(all.first(half - 1));
    b.eval(all.subspan(half - 1, 1));
    EXPECT_TRUE(std::equal(a.logits().begin(), a.logits().end(), b.logits().begin()))
        << "snapshot inside the prompt's last step";
  }
  // reset() empties the state: the first half again gives the fresh logits.
  s.reset();
  s.eval(all.first(half), /*all_logits=*/true);
  straw::Session f(model);
  f.eval(all.first(half), /*all_logits=*/true);
  EXPECT_TRUE(std::equal(s.logits().begin(), s.logits().end(), f.logits().begin()))
      << "after reset";
}

}  // namespace straw::test
