// The token-level algorithms of speculative decoding: proposing tokens by prompt lookup (n-grams)
// and speculative sampling, the acceptance rule that keeps the output distribution exactly the
// target model's.
//
// Speculative sampling (Leviathan et al. 2023; Chen et al. 2023). A proposal x was drawn from the
// proposer's distribution q. Accept it with probability min(1, p(x) / q(x)), p being the target's
// distribution; otherwise draw from the residual r(y) ∝ max(0, p(y) − q(y)). For every y:
//   P(y) = q(y) min(1, p(y)/q(y)) + (1 − Σ_x min(p(x), q(x))) r(y) = min(p, q)(y) + max(0, p −
//   q)(y)
//        = p(y),
// so the output follows p whatever q is; q only sets how often proposals are accepted
// (Σ_x min(p(x), q(x))). A deterministic proposer (n-gram lookup, a greedy draft) is the case
// q = δ_x: accept with probability p(x), else draw from p without x, which is the same as drawing
// y ~ p and accepting x when y == x: sampling the target and comparing, which also works with the
// sampler's token constraints.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/sampler.h"

namespace straw::model {

// Prompt lookup: finds the most recent earlier occurrence of the longest suffix of `sequence`
// (max_ngram tokens, then shorter, down to 1) and returns the tokens that followed it, at most
// max_tokens. The continuation is read from the sequence extended by the proposal itself, so a
// periodic text keeps its period past the end ("a b a b" proposes "a b ..."). Empty when no
// suffix recurs. Linear in the sequence's length per n-gram size.
std::vector<int32_t> ngram_lookup(std::span<const int32_t> sequence, int max_ngram, int max_tokens);

// Speculative sampling at one position: `proposal` was drawn from q (the proposer's distribution,
// sparse: the tokens with q > 0; it must hold the proposal). Returns `proposal` when accepted, else
// a token of the residual max(0, p − q), p = target.distribution(logits). Uses target's generator.
// `scratch` is a buffer of logits.size() zeros, left as it was found.
int32_t verify_with_distribution(Sampler& target, std::span<const float> logits, int32_t proposal,
                                 std::span<const TokenProb> q, std::vector<float>& scratch);

}  // namespace straw::model
