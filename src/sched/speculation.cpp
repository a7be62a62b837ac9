#include "sched/speculation.h"

#include <algorithm>
#include <cmath>

namespace straw::sched {

namespace {

// Weight of the past in the acceptance estimate, per verified step: about the last 10 steps count.
constexpr double kDecay = 0.9;
// Pseudo-counts of the prior (worth two steps of four proposals).
constexpr double kPriorWeight = 8.0;
// While speculation is predicted not to pay, one probing step every this many steps.
constexpr int kProbeEvery = 8;
// A choice of k must beat plain decoding by this much to be taken (the prediction is rough).
constexpr double kMinSpeedup = 1.05;

}  // namespace

double expected_tokens(double a, int k) {
  double e = 0, term = 1;
  for (int i = 0; i <= k; ++i) {
    e += term;
    term *= a;
  }
  return e;
}

double SpecCost::step(int n) const {
  if (target.empty()) return 0;
  if (n <= int(target.size())) return target[size_t(std::max(n, 1) - 1)];
  // Past the table: the last increment continues.
  const double last = target.back();
  const double inc = target.size() > 1 ? last - target[target.size() - 2] : 0.0;
  return last + inc * double(n - int(target.size()));
}

SpecCost predicted_cost(const Plan& target, const Plan* draft, int max_tokens) {
  SpecCost c;
  for (int n = 1; n <= std::max(1, max_tokens); ++n) c.target.push_back(step_seconds(target, n));
  c.draft_token = draft ? step_seconds(*draft, 1) : 0.0;
  return c;
}

double speedup(const SpecCost& c, double a, int k) {
  const double t1 = c.step(1);
  const double tk = c.step(1 + k) + k * c.draft_token;
  return tk > 0 ? expected_tokens(a, k) * t1 / tk : 1.0;
}

DraftChoice best_draft_length(const SpecCost& c, double a, int k_min, int k_max) {
  DraftChoice best;
  for (int k = std::max(1, k_min); k <= k_max; ++k) {
    const double s = speedup(c, a, k);
    if (s > best.speedup) best = {k, s};
  }
  return best;
}

DraftController::DraftController(int k_min, int k_max, bool adaptive, double prior)
    : k_min_(std::max(0, k_min)),
      k_max_(std::max(0, k_max)),
      adaptive_(adaptive),
      accepted_(kPriorWeight * prior),
      rejected_(kPriorWeight * (1.0 - prior)) {}

double DraftController::acceptance() const {
  return accepted_ / (accepted_ + rejected_);
}

int DraftController::next(const SpecCost& c) {
  if (k_max_ == 0) return 0;
  if (!adaptive_) return k_max_;
  const DraftChoice choice = best_draft_length(c, acceptance(), k_min_, k_max_);
  if (choice.k > 0 && choice.speedup >= kMinSpeedup) {
    idle_steps_ = 0;
    return choice.k;
  }
  if (++idle_steps_ < kProbeEvery) return 0;
  idle_steps_ = 0;
  return std::max(1, k_min_);
}

void DraftController::observe(int checked, int accepted) {
  if (checked <= 0) return;
  const int rejected = checked - accepted;
  accepted_ = kDecay * accepted_ + accepted;
  rejected_ = kDecay * rejected_ + rejected;
}

}  // namespace straw::sched
