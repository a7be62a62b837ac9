// The sampler chain. Stage semantics follow llama.cpp's src/llama-sampler.cpp (see sampler.h);
// `cand_` holds the candidates, [0, size) being the ones still in play, in the order llama.cpp
// would hold them, `sorted` saying whether that order is descending logit.
#include "model/sampler.h"

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <limits>

#include "gguf/gguf.h"
#include "gguf/value.h"
#include "util/str.h"

namespace straw::model {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Descending logit, ties by ascending id: a strict total order (NaN never reaches it), so every
// sort below is deterministic.
bool better(const auto& a, const auto& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// Weight of a candidate relative to the maximum logit: exp(logit - max), or, when the maximum is
// infinite (where that difference is NaN), 1 for the candidates tied at the maximum and 0 else.
float weight(float logit, float max_logit) {
  if (std::isinf(max_logit)) return logit == max_logit ? 1.0f : 0.0f;
  return std::exp(logit - max_logit);
}

template <class C>
float max_logit(const C* c, size_t n) {
  float m = -kInf;
  for (size_t i = 0; i < n; ++i) m = std::max(m, c[i].logit);
  return m;
}

// A random 32-bit seed other than kRandomSeed itself (so that passing seed_used() back
// reproduces the run). std::random_device may be unavailable; the clock is mixed in regardless.
uint64_t random_seed() {
  const auto now =
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  uint32_t s = static_cast<uint32_t>(now ^ (now >> 32));
  try {
    std::random_device rd;
    s ^= rd();
  } catch (const std::exception&) {
    // No entropy source: the clock alone seeds.
  }
  if (s == kRandomSeed) s = 0;
  return s;
}

}  // namespace

void validate(const SamplingParams& p) {
  if (!std::isfinite(p.temperature))
    fail("sampling: temperature ", p.temperature,
         " is not finite; use a number (<= 0 for greedy decoding)");
  if (std::isnan(p.top_p)) fail("sampling: top_p is NaN; use a number in (0, 1], 1 to disable");
  if (std::isnan(p.min_p)) fail("sampling: min_p is NaN; use a number in [0, 1], 0 to disable");
  if (!std::isfinite(p.repeat_penalty) || p.repeat_penalty <= 0.0f)
    fail("sampling: repeat_penalty ", p.repeat_penalty,
         " is not a positive finite number; use 1 to disable it");
  if (!std::isfinite(p.frequency_penalty))
    fail("sampling: frequency_penalty ", p.frequency_penalty,
         " is not finite; use 0 to disable it");
  if (!std::isfinite(p.presence_penalty))
    fail("sampling: presence_penalty ", p.presence_penalty, " is not finite; use 0 to disable it");
  if (p.penalty_last_n < -1)
    fail("sampling: penalty_last_n ", p.penalty_last_n,
         " is invalid; use a window size, 0 to disable penalties or -1 for the whole history");
  if (p.min_keep < 0) fail("sampling: min_keep ", p.min_keep, " is negative");
}

Sampler::Sampler(SamplingParams p) : params_(p) {
  validate(params_);
  if (params_.penalty_last_n > 0) ring_.resize(static_cast<size_t>(params_.penalty_last_n));
  seed_rng();
}

void Sampler::seed_rng() {
  seed_used_ = params_.seed == kRandomSeed ? random_seed() : params_.seed;
  if (seed_used_ <= std::numeric_limits<uint32_t>::max()) {
    // llama.cpp: std::mt19937(uint32_t seed).
    rng_.seed(static_cast<std::mt19937::result_type>(seed_used_));
  } else {
    std::seed_seq seq{static_cast<uint32_t>(seed_used_), static_cast<uint32_t>(seed_used_ >> 32)};
    rng_.seed(seq);
  }
}

void Sampler::reset() {
  clear_history();
  seed_rng();
}

void Sampler::clear_history() {
  for (int32_t t : present_) counts_[static_cast<size_t>(t)] = 0;
  present_.clear();
  ring_head_ = 0;
  ring_size_ = 0;
}

bool Sampler::has_penalties() const {
  const SamplingParams& p = params_;
  return p.penalty_last_n != 0 &&
         (p.repeat_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f);
}

void Sampler::accept(int32_t token) {
  if (token < 0) fail("Sampler::accept: token id ", token, " is negative");
  if (params_.penalty_last_n == 0) return;
  const auto t = static_cast<size_t>(token);
  if (t >= counts_.size()) {
    counts_.resize(t + 1, 0);
    slot_.resize(t + 1, 0);
  }
  if (params_.penalty_last_n > 0) {
    if (ring_size_ == ring_.size()) {
      // Full window: the oldest token leaves (its slot is the one the new token takes).
      const auto old = static_cast<size_t>(ring_[ring_head_]);
      if (--counts_[old] == 0) {
        const int32_t moved = present_.back();
        present_[static_cast<size_t>(slot_[old])] = moved;
        slot_[static_cast<size_t>(moved)] = slot_[old];
        present_.pop_back();
      }
      ring_[ring_head_] = token;
      ring_head_ = (ring_head_ + 1) % ring_.size();
    } else {
      ring_[(ring_head_ + ring_size_) % ring_.size()] = token;
      ++ring_size_;
    }
  }
  if (counts_[t]++ == 0) {
    slot_[t] = static_cast<int32_t>(present_.size());
    present_.push_back(token);
  }
}

bool Sampler::penalties_active() const {
  const SamplingParams& p = params_;
  return p.penalty_last_n != 0 && !present_.empty() &&
         (p.repeat_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f);
}

float Sampler::penalized(size_t token, float logit) const {
  const SamplingParams& p = params_;
  float l = std::isnan(logit) ? -kInf : logit;
  // Dividing a negative logit would raise it, so negative ones are multiplied instead.
  l = l <= 0.0f ? l * p.repeat_penalty : l / p.repeat_penalty;
  return l - (static_cast<float>(counts_[token]) * p.frequency_penalty + p.presence_penalty);
}

// Calls visit(id, logit) once per token of the row: the unpenalized tokens first, in ascending
// id order and with their raw logit (NaN included: visitors treat it as -inf by comparing with
// `>`), then the penalized ones with their penalized logit (never NaN).
template <class Visit>
void Sampler::visit_row(std::span<const float> logits, Visit&& visit) const {
  const size_t n = logits.size();
  const float* l = logits.data();
  if (!penalties_active()) {
    for (size_t i = 0; i < n; ++i) visit(i, l[i]);
    return;
  }
  const size_t counted = std::min(n, counts_.size());
  for (size_t i = 0; i < counted; ++i)
    if (counts_[i] == 0) visit(i, l[i]);
  for (size_t i = counted; i < n; ++i) visit(i, l[i]);
  for (int32_t t : present_) {
    const auto i = static_cast<size_t>(t);
    if (i < n) visit(i, penalized(i, l[i]));
  }
}

int32_t Sampler::greedy(std::span<const float> logits) const {
  // Ties go to the lowest id; a row of NaN only falls back to token 0.
  size_t best = logits.size();
  float best_logit = -kInf;
  visit_row(logits, [&](size_t i, float v) {
    if (v > best_logit || (v == best_logit && i < best)) {
      best = i;
      best_logit = v;
    }
  });
  return best == logits.size() ? 0 : static_cast<int32_t>(best);
}

void Sampler::load_all(std::span<const float> logits) {
  const size_t n = logits.size();
  cand_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const float l = logits[i];
    cand_[i] = Candidate{static_cast<int32_t>(i), std::isnan(l) ? -kInf : l, 0.0f};
  }
  if (!penalties_active()) return;
  for (int32_t t : present_) {
    const auto i = static_cast<size_t>(t);
    if (i < n) cand_[i].logit = penalized(i, logits[i]);
  }
}

// Offers one token to the top-k heap in `cand_` (whose top is the worst kept): it enters while
// the heap has fewer than k entries, else when it ranks above the top, which it replaces.
// `worst` / `worst_id` mirror the top once the heap is full.
void Sampler::offer_top_k(int32_t id, float v, size_t k, float& worst, int32_t& worst_id) {
  const auto worse = [](const Candidate& a, const Candidate& b) { return better(a, b); };
  const Candidate c{id, std::isnan(v) ? -kInf : v, 0.0f};
  if (cand_.size() == k) {
    if (!better(c, cand_.front())) return;
    std::pop_heap(cand_.begin(), cand_.end(), worse);
    cand_.back() = c;
  } else {
    cand_.push_back(c);
  }
  std::push_heap(cand_.begin(), cand_.end(), worse);
  if (cand_.size() == k) {
    worst = cand_.front().logit;
    worst_id = cand_.front().id;
  }
}

// The k best candidates (k < row size), best first, in one pass. The inline test lets through
// exactly the tokens that rank above (worst, worst_id) plus any NaN (which offer_top_k ranks as
// -inf); while the heap fills, (-inf, INT32_MAX) lets every token through.
void Sampler::select_top_k(std::span<const float> logits, size_t k) {
  cand_.clear();
  float worst = -kInf;
  int32_t worst_id = std::numeric_limits<int32_t>::max();
  visit_row(logits, [&](size_t i, float v) {
    const auto id = static_cast<int32_t>(i);
    if (!(v < worst) && (v != worst || id < worst_id)) offer_top_k(id, v, k, worst, worst_id);
  });
  std::sort_heap(cand_.begin(), cand_.end(),
                 [](const Candidate& a, const Candidate& b) { return better(a, b); });
}

void Sampler::top_p(size_t& size, bool& sorted) {
  const float top_p = params_.top_p;
  if (top_p >= 1.0f) return;
  // Softmax of the current logits in float, as llama.cpp computes it for this stage.
  Candidate* c = cand_.data();
  const float m = max_logit(c, size);
  float sum = 0.0f;
  for (size_t i = 0; i < size; ++i) {
    c[i].p = weight(c[i].logit, m);
    sum += c[i].p;
  }
  for (size_t i = 0; i < size; ++i) c[i].p /= sum;

  // The kept set is a prefix of the descending order, usually short: sort a head of 256 first
  // and, while the cumulative probability has not reached top_p, select (nth_element) and sort
  // the next chunk, 4 times larger each time. A strict total order makes this equal to one full
  // sort.
  const auto at = [&](size_t i) { return cand_.begin() + static_cast<std::ptrdiff_t>(i); };
  size_t sorted_upto = sorted ? size : 0;
  const auto sort_upto = [&](size_t want) {
    want = std::min(want, size);
    if (want < size)
      std::nth_element(at(sorted_upto), at(want), at(size), better<Candidate, Candidate>);
    std::sort(at(sorted_upto), at(want), better<Candidate, Candidate>);
    sorted_upto = want;
  };
  const auto min_keep = static_cast<size_t>(params_.min_keep);
  float cum = 0.0f;
  size_t last = size;
  for (size_t i = 0; i < size; ++i) {
    if (i == sorted_upto) sort_upto(std::max<size_t>(256, 4 * sorted_upto));
    cum += c[i].p;
    if (cum >= top_p && i + 1 >= min_keep) {
      last = i + 1;
      break;
    }
  }
  sorted = true;
  size = last;
}

void Sampler::min_p(size_t& size, bool& sorted) {
  const float min_p = params_.min_p;
  if (min_p <= 0.0f) return;
  const auto min_keep = static_cast<size_t>(params_.min_keep);
  Candidate* c = cand_.data();
  if (!sorted) {
    // Filter in place keeping the current order, when that leaves enough candidates.
    float m = -FLT_MAX;
    for (size_t i = 0; i < size; ++i) m = std::max(m, c[i].logit);
    const float threshold = m + std::log(min_p);
    size_t kept = 0;
    for (size_t i = 0; i < size; ++i) kept += c[i].logit >= threshold ? 1 : 0;
    if (kept > 0 && kept >= min_keep) {
      size_t j = 0;
      for (size_t i = 0; i < size; ++i)
        if (c[i].logit >= threshold) c[j++] = c[i];
      size = kept;
      return;
    }
    std::sort(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(size),
              better<Candidate, Candidate>);
    sorted = true;
  }
  const float threshold = c[0].logit + std::log(min_p);
  size_t i = 1;  // the best candidate always stays
  while (i < size && (c[i].logit >= threshold || i < min_keep)) ++i;
  size = i;
}

int32_t Sampler::dist(size_t size) {
  const Candidate* c = cand_.data();
  if (size == 1) return c[0].id;
  const float m = max_logit(c, size);
  double sum = 0.0;
  for (size_t i = 0; i < size; ++i) {
    cand_[i].p = weight(c[i].logit, m);
    sum += cand_[i].p;
  }
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const double target = sum * uniform(rng_);
  double run = 0.0;
  for (size_t i = 0; i < size; ++i) {
    run += c[i].p;
    // `p > 0`: a zero-probability candidate is never drawn, even for a draw of exactly 0.
    if (run >= target && c[i].p > 0.0f) return c[i].id;
  }
  // Rounding left the running sum just below the target: the last candidate with mass.
  for (size_t i = size; i-- > 0;)
    if (c[i].p > 0.0f) return c[i].id;
  return c[size - 1].id;
}

// The chain up to the draw (temperature > 0): leaves the candidates in cand_[0, size) with their
// logits divided by the temperature, and returns size.
size_t Sampler::chain(std::span<const float> logits) {
  const size_t n = logits.size();
  size_t size = n;
  bool sorted = false;
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
    size = static_cast<size_t>(params_.top_k);
    select_top_k(logits, size);
    sorted = true;
  } else {
    load_all(logits);
    if (params_.top_k > 0) {
      // top_k >= the row size keeps every candidate but still sorts them (as llama.cpp does).
      std::sort(cand_.begin(), cand_.end(), better<Candidate, Candidate>);
      sorted = true;
    }
  }
  top_p(size, sorted);
  min_p(size, sorted);
  const float temp = params_.temperature;
  for (size_t i = 0; i < size; ++i) cand_[i].logit /= temp;
  return size;
}

namespace {

void check_row(size_t n) {
  if (n == 0) fail("Sampler::sample: the logits row is empty (a vocabulary of 0 tokens)");
  if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    fail("Sampler::sample: ", n, " logits exceed the int32 token id range");
}

}  // namespace

int32_t Sampler::sample(std::span<const float> logits) {
  check_row(logits.size());
  // llama.cpp runs the whole chain and then keeps the argmax; every filter keeps the argmax, so
  // that is the argmax of the penalized logits.
  if (params_.temperature <= 0.0f) return greedy(logits);
  return dist(chain(logits));
}

std::span<const TokenProb> Sampler::distribution(std::span<const float> logits) {
  check_row(logits.size());
  dist_.clear();
  if (params_.temperature <= 0.0f) {
    dist_.push_back({greedy(logits), 1.0f});
    return dist_;
  }
  // The weights dist() walks, normalized in double as its running sum is.
  const size_t size = chain(logits);
  const float m = max_logit(cand_.data(), size);
  double sum = 0.0;
  for (size_t i = 0; i < size; ++i) {
    cand_[i].p = weight(cand_[i].logit, m);
    sum += cand_[i].p;
  }
  for (size_t i = 0; i < size; ++i)
    if (cand_[i].p > 0.0f) dist_.push_back({cand_[i].id, static_cast<float>(cand_[i].p / sum)});
  return dist_;
}

double Sampler::uniform() {
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
}

int32_t Sampler::draw(std::span<const TokenProb> weights) {
  double sum = 0.0;
  for (const TokenProb& w : weights) sum += w.p;
  if (!(sum > 0.0)) fail("Sampler::draw: every weight is 0");
  const double target = sum * uniform();
  double run = 0.0;
  for (const TokenProb& w : weights) {
    run += w.p;
    if (run >= target && w.p > 0.0f) return w.id;
  }
  for (size_t i = weights.size(); i-- > 0;)
    if (weights[i].p > 0.0f) return weights[i].id;
  return weights.back().id;
}

namespace {

std::optional<int32_t> meta_int(const MetadataLookup& lookup, std::string_view key) {
  const gguf::Value* v = lookup ? lookup(key) : nullptr;
  if (v == nullptr) return std::nullopt;
  if (!v->is_array() && gguf::is_integer_type(v->type())) {
    if (auto x = v->as_int<int32_t>()) return x;
    fail("model metadata ", key, " = ", gguf::to_json(*v),
         " does not fit int32; set the sampling option explicitly to override it");
  }
  fail("model metadata ", key, " has type ", v->type_string(),
       ", expected an integer; set the sampling option explicitly to override it");
}

std::optional<float> meta_float(const MetadataLookup& lookup, std::string_view key) {
  const gguf::Value* v = lookup ? lookup(key) : nullptr;
  if (v == nullptr) return std::nullopt;
  if (!v->is_array() && gguf::is_float_type(v->type())) return static_cast<float>(v->as_double());
  if (!v->is_array() && gguf::is_integer_type(v->type())) {
    if (auto x = v->as_int<int64_t>()) return static_cast<float>(*x);
    if (auto x = v->as_int<uint64_t>()) return static_cast<float>(*x);
  }
  fail("model metadata ", key, " has type ", v->type_string(),
       ", expected a number; set the sampling option explicitly to override it");
}

// user, else metadata (read only then), else the default already in `field`.
template <class T, class Read>
void merge(T& field, const std::optional<T>& user, Read read) {
  if (user) {
    field = *user;
  } else if (auto m = read()) {
    field = *m;
  }
}

}  // namespace

SamplingParams resolve_sampling(const UserSampling& user, const MetadataLookup& lookup) {
  SamplingParams p;
  const auto i32 = [&](const char* key) {
    return [&lookup, key] { return meta_int(lookup, key); };
  };
  const auto f32 = [&](const char* key) {
    return [&lookup, key] { return meta_float(lookup, key); };
  };
  merge(p.temperature, user.temperature, f32("general.sampling.temp"));
  merge(p.top_k, user.top_k, i32("general.sampling.top_k"));
  merge(p.top_p, user.top_p, f32("general.sampling.top_p"));
  merge(p.min_p, user.min_p, f32("general.sampling.min_p"));
  merge(p.penalty_last_n, user.penalty_last_n, i32("general.sampling.penalty_last_n"));
  merge(p.repeat_penalty, user.repeat_penalty, f32("general.sampling.penalty_repeat"));
  // llama.cpp defines no metadata keys for these.
  const auto none = [] { return std::optional<float>(); };
  merge(p.frequency_penalty, user.frequency_penalty, none);
  merge(p.presence_penalty, user.presence_penalty, none);
  if (user.seed) p.seed = *user.seed;
  if (user.min_keep) p.min_keep = *user.min_keep;
  validate(p);
  return p;
}

SamplingParams resolve_sampling(const UserSampling& user, const gguf::Reader* meta) {
  if (meta == nullptr) return resolve_sampling(user, MetadataLookup());
  return resolve_sampling(user, [meta](std::string_view key) { return meta->find(key); });
}

}  // namespace straw::model
