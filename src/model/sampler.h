// Token sampling with llama.cpp's default sampler chain and semantics:
//   penalties -> top_k -> top_p -> min_p -> temperature -> dist
// (llama.cpp's common/sampling.cpp with DRY, top-n-sigma, typical-p and XTC at their disabled
// defaults), plus resolve_sampling(), which merges user settings over a model's recommended
// `general.sampling.*` metadata over these defaults.
//
// Reproducibility: `dist` draws one std::uniform_real_distribution<double>(0, 1) value from a
// std::mt19937 seeded with `seed` and walks the candidates' cumulative probability (inverse CDF),
// exactly as llama.cpp's dist sampler does, and no draw is made when only one candidate is left
// (as in llama.cpp). The candidate order the walk sees also follows llama.cpp's (vocabulary order
// until a stage sorts; top_k and top_p sort by descending logit; min_p filters in place). So for
// the same logits and a seed below 2^32, straw draws the same tokens as llama.cpp built against the
// same C++ standard library (the distribution's algorithm is the library's), except where exactly
// tied logits are ordered differently: straw breaks ties by ascending token id, llama.cpp's sort
// leaves them unspecified. A given seed always reproduces the same sequence within straw.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <string_view>
#include <vector>

namespace straw::gguf {
class Reader;
class Value;
}  // namespace straw::gguf

namespace straw::model {

// LLAMA_DEFAULT_SEED: this seed value means "draw a random seed" (at construction and reset()).
inline constexpr uint64_t kRandomSeed = 0xFFFFFFFF;

// A token and its probability under a sampler's distribution.
struct TokenProb {
  int32_t id = 0;
  float p = 0;
};

struct SamplingParams {
  float temperature = 0.8f;        // <= 0: greedy (argmax, ties -> lowest id)
  int32_t top_k = 40;              // <= 0: off; >= vocabulary size: keeps all (but sorts)
  float top_p = 0.95f;             // >= 1: off
  float min_p = 0.05f;             // <= 0: off
  int32_t penalty_last_n = 64;     // penalty window: 0 off, -1 the whole history
  float repeat_penalty = 1.0f;     // 1: off; divides positive logits, multiplies negative ones
  float frequency_penalty = 0.0f;  // subtracted once per occurrence in the window
  float presence_penalty = 0.0f;   // subtracted once if the token occurs in the window
  uint64_t seed = kRandomSeed;     // kRandomSeed: random; seeds >= 2^32 use all 64 bits
  int32_t min_keep = 0;            // top_p and min_p keep at least this many candidates
};

// Throws straw::Error naming the field when a value is unusable (NaN anywhere, an infinite
// temperature or penalty, repeat_penalty <= 0, penalty_last_n < -1, min_keep < 0).
void validate(const SamplingParams& p);

class Sampler {
 public:
  // Validates `p` (see validate()) and seeds the generator.
  explicit Sampler(SamplingParams p);

  // Picks a token id from one row of logits (the vocabulary). NaN logits count as -inf. When
  // every remaining candidate is -inf (or several are +inf), those tied at the maximum are drawn
  // uniformly. Throws straw::Error for an empty row. Buffers are reused: after the first call a
  // row of the same or smaller size allocates nothing. Cost: one pass over the row when greedy or
  // when 0 < top_k < row size (the default); otherwise the row is copied and top_p sorts as much
  // of it as its nucleus spans.
  int32_t sample(std::span<const float> logits);

  // The distribution sample() draws from for this row and the current penalty window: the
  // candidates the chain keeps, each with its probability (they sum to 1; order unspecified).
  // Greedy: the argmax with probability 1. Draws nothing from the generator. Valid until the next
  // call of sample() or distribution().
  std::span<const TokenProb> distribution(std::span<const float> logits);
  // One draw from U[0, 1) of the generator (speculative sampling's acceptance test).
  double uniform();
  // A token drawn from unnormalized nonnegative weights (inverse CDF, one uniform draw); the
  // last token with weight when rounding leaves the running sum short. Throws when every weight is
  // 0.
  int32_t draw(std::span<const TokenProb> weights);

  // Records a token in the penalty window (only the tokens that are accepted count; llama.cpp's
  // tools accept the prompt tokens too, so call this for them to get the same penalties). Tokens
  // outside the row passed to sample() are remembered but never penalized. Throws for id < 0.
  void accept(int32_t token);

  // Clears the penalty history and reseeds the generator (a fresh random seed for kRandomSeed).
  void reset();
  // Clears the penalty history only (the generator goes on).
  void clear_history();
  // Whether sample() applies penalties for tokens accept()ed (a penalty is set and the window is
  // not 0).
  bool has_penalties() const;

  const SamplingParams& params() const { return params_; }
  // The seed in effect: params().seed, or the drawn one when that is kRandomSeed.
  uint64_t seed_used() const { return seed_used_; }

 private:
  // One candidate token; `p` is scratch for the softmax of the stage that needs it.
  struct Candidate {
    int32_t id;
    float logit;
    float p;
  };

  void seed_rng();
  bool penalties_active() const;
  float penalized(size_t token, float logit) const;
  template <class Visit>
  void visit_row(std::span<const float> logits, Visit&& visit) const;
  int32_t greedy(std::span<const float> logits) const;
  void load_all(std::span<const float> logits);
  void offer_top_k(int32_t id, float v, size_t k, float& worst, int32_t& worst_id);
  void select_top_k(std::span<const float> logits, size_t k);
  void top_p(size_t& size, bool& sorted);
  void min_p(size_t& size, bool& sorted);
  size_t chain(std::span<const float> logits);
  int32_t dist(size_t size);

  SamplingParams params_;
  uint64_t seed_used_ = 0;
  std::mt19937 rng_;
  std::vector<Candidate> cand_;
  std::vector<TokenProb> dist_;  // distribution()'s result
  // Penalty window: the last `penalty_last_n` accepted tokens in a ring (unused for -1, which
  // never forgets), the occurrence count per token id, the ids with a nonzero count, and each
  // such id's index in `present_` (for O(1) removal).
  std::vector<int32_t> ring_;
  size_t ring_head_ = 0;
  size_t ring_size_ = 0;
  std::vector<int32_t> counts_;
  std::vector<int32_t> present_;
  std::vector<int32_t> slot_;
};

// Sampling settings a user gave explicitly; an empty field falls back to the model's recommended
// `general.sampling.*` value, then to the SamplingParams default.
struct UserSampling {
  std::optional<float> temperature;
  std::optional<int32_t> top_k;
  std::optional<float> top_p;
  std::optional<float> min_p;
  std::optional<int32_t> penalty_last_n;
  std::optional<float> repeat_penalty;
  std::optional<float> frequency_penalty;
  std::optional<float> presence_penalty;
  std::optional<uint64_t> seed;
  std::optional<int32_t> min_keep;
};

// Looks a metadata key up; nullptr when absent.
using MetadataLookup = std::function<const gguf::Value*(std::string_view key)>;

// user > metadata > defaults. The keys llama.cpp reads (common/common.cpp): general.sampling.top_k,
// .top_p, .min_p, .temp, .penalty_last_n, .penalty_repeat. Integer keys accept any integer type
// that fits int32; float keys accept float32/float64 or an integer. A key of another type throws
// straw::Error (naming the key, and saying that setting the field explicitly bypasses it); a key
// is only read when the user did not set its field. An empty `lookup` means no metadata.
SamplingParams resolve_sampling(const UserSampling& user, const MetadataLookup& lookup);
// The same over a model file's metadata; `meta` may be null (defaults only).
SamplingParams resolve_sampling(const UserSampling& user, const gguf::Reader* meta);

}  // namespace straw::model
