#include "model/speculative.h"

#include <algorithm>

#include "util/str.h"

namespace straw::model {

std::vector<int32_t> ngram_lookup(std::span<const int32_t> sequence, int max_ngram,
                                  int max_tokens) {
  std::vector<int32_t> out;
  const int64_t len = int64_t(sequence.size());
  if (max_tokens <= 0 || len < 2) return out;
  for (int64_t n = std::min<int64_t>(max_ngram, len - 1); n >= 1; --n) {
    const int32_t* suffix = sequence.data() + (len - n);
    // Most recent start i with sequence[i, i + n) == suffix and a token after it (i + n < len).
    for (int64_t i = len - n - 1; i >= 0; --i) {
      if (sequence[size_t(i)] != suffix[0] || !std::equal(suffix, suffix + n, sequence.begin() + i))
        continue;
      // Token j of the proposal is token i + n + j of sequence + proposal.
      for (int64_t j = 0; j < max_tokens; ++j) {
        const int64_t src = i + n + j;
        out.push_back(src < len ? sequence[size_t(src)] : out[size_t(src - len)]);
      }
      return out;
    }
  }
  return out;
}

int32_t verify_with_distribution(Sampler& target, std::span<const float> logits, int32_t proposal,
                                 std::span<const TokenProb> q, std::vector<float>& scratch) {
  float qx = 0;
  for (const TokenProb& t : q)
    if (t.id == proposal) qx = t.p;
  if (!(qx > 0)) fail("speculative sampling: the proposal ", proposal, " has no probability in q");
  // Copied: drawing below does not touch the distribution, but keep it independent of the sampler.
  const std::span<const TokenProb> p = target.distribution(logits);
  float px = 0;
  for (const TokenProb& t : p)
    if (t.id == proposal) px = t.p;
  // Accept with probability min(1, p(x) / q(x)): u < p/q with u ~ U[0, 1).
  if (px >= qx || target.uniform() * double(qx) < double(px)) return proposal;
  // The residual max(0, p − q) over p's support (it is 0 outside). q is spread into the scratch
  // row so each p(y) finds q(y) in O(1).
  if (scratch.size() < logits.size()) scratch.assign(logits.size(), 0.0f);
  for (const TokenProb& t : q)
    if (t.id >= 0 && size_t(t.id) < scratch.size()) scratch[size_t(t.id)] = t.p;
  std::vector<TokenProb> residual;
  residual.reserve(p.size());
  for (const TokenProb& t : p) {
    const float r = t.p - scratch[size_t(t.id)];
    if (r > 0) residual.push_back({t.id, r});
  }
  for (const TokenProb& t : q)
    if (t.id >= 0 && size_t(t.id) < scratch.size()) scratch[size_t(t.id)] = 0.0f;
  // p == q up to rounding leaves nothing: then every proposal is accepted with probability 1 but
  // for that rounding, and p itself is the right distribution to fall back to.
  if (residual.empty()) return target.draw(target.distribution(logits));
  return target.draw(residual);
}

}  // namespace straw::model
