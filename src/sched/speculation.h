// The cost model of speculative decoding, and the controller that picks each step's draft length.
//
// A verification step evaluates the last accepted token plus k proposals in one forward pass. With
// a per-token acceptance rate a (each proposal accepted with probability a, given the ones before
// it were), a step yields E(a, k) = 1 + a + ... + a^k tokens: the accepted prefix plus the token
// the target picks after it. It costs T(1 + k) (one pass reading the weights once for 1 + k tokens,
// see step_seconds) plus k proposals at D seconds each. Plain decoding yields one token per T(1),
// so
//   speed-up(a, k) = E(a, k) · T(1) / (T(1 + k) + k · D).
// Memory-bound decoding makes T(1 + k) close to T(1), which is where the speed-up comes from; a
// draft model's D is roughly its weight bytes over the target's times T(1), and prompt lookup's is
// ~0.
#pragma once

#include <vector>

#include "sched/plan.h"

namespace straw::sched {

// 1 + a + ... + a^k.
double expected_tokens(double a, int k);

struct SpecCost {
  std::vector<double> target;  // target[n - 1]: seconds of a target step over n tokens, n >= 1
  double draft_token = 0;      // seconds the proposer spends per proposed token
  double step(int n) const;    // target[n - 1], extended linearly past the table's end
};

// The predicted costs from the plans: the target's steps of 1..max_tokens tokens, the draft's
// decode step (null: a proposer that costs nothing, such as prompt lookup).
SpecCost predicted_cost(const Plan& target, const Plan* draft, int max_tokens);

double speedup(const SpecCost& c, double a, int k);

struct DraftChoice {
  int k = 0;             // proposals per step; 0: plain decoding is predicted faster
  double speedup = 1.0;  // predicted, over plain decoding
};
// The k in [max(1, k_min), k_max] with the best predicted speed-up; k = 0 when none beats 1.
DraftChoice best_draft_length(const SpecCost& c, double a, int k_min, int k_max);

// Chooses the draft length of each step: from the acceptance rate seen recently (an estimate that
// forgets old steps, so it follows a change of text: code being re-typed, then new prose) and the
// costs, the best k; while speculation is predicted not to pay, it still probes with k_min
// proposals every few steps, so that a rise of the acceptance rate is noticed.
class DraftController {
 public:
  // adaptive = false: always k_max (no cost decision). prior: the acceptance rate assumed before
  // anything was observed.
  DraftController(int k_min, int k_max, bool adaptive, double prior = 0.6);

  // Proposals to ask for in the next step (0: decode without speculating).
  int next(const SpecCost& c);
  // A verified step: `checked` proposals were compared, the first `accepted` of them accepted (so
  // checked == accepted + 1 when one was rejected, checked == accepted when all were or when the
  // caller stopped early).
  void observe(int checked, int accepted);
  double acceptance() const;  // the current estimate
  int k_min() const { return k_min_; }
  int k_max() const { return k_max_; }

 private:
  int k_min_, k_max_;
  bool adaptive_;
  // Decayed counts of accepted and rejected proposals, with the prior as pseudo-counts.
  double accepted_, rejected_;
  int idle_steps_ = 0;  // steps since the last proposal (while speculation does not pay)
};

}  // namespace straw::sched
