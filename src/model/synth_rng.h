// The synthesizer's random numbers (internal to model/synth*.cpp): xoshiro256** seeded through
// splitmix64, both by their published definitions. Fast (one 64-bit draw gives 16 nibbles) and
// identical on every platform, which the byte-for-byte determinism of synthetic files relies on.
#pragma once

#include <cstdint>
#include <string_view>

namespace straw::model::synth {

inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// FNV-1a: a stable 64-bit hash of a tensor name.
inline uint64_t hash_name(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return h;
}

// The seed of one chunk of one tensor.
inline uint64_t chunk_seed(uint64_t seed, std::string_view name, uint64_t chunk) {
  uint64_t s = seed ^ hash_name(name);
  uint64_t a = splitmix64(s);
  s = a ^ (chunk * 0xD1B54A32D192ED03ull);
  return splitmix64(s);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    uint64_t s = seed;
    for (uint64_t& w : s_) w = splitmix64(s);
  }

  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 24 bits.
  float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }

  // Uniform integer in [lo, hi] (multiply-shift; the bias is below 2^-32).
  int range(int lo, int hi) {
    const uint64_t span = static_cast<uint64_t>(hi - lo + 1);
    return lo + static_cast<int>(((next() >> 32) * span) >> 32);
  }

  // +1 or -1.
  float sign() { return (next() >> 63) ? -1.0f : 1.0f; }

  // Approximately standard normal: the Irwin-Hall sum of four 16-bit uniforms, rescaled to unit
  // variance (support +-3.46; plenty for random weights, and one draw per value).
  float normal() {
    const uint64_t r = next();
    const float sum =
        static_cast<float>((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48));
    return (sum * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
  }

  // Fills n bytes with random bits.
  void bytes(uint8_t* dst, int n) {
    while (n >= 8) {
      const uint64_t r = next();
      for (int k = 0; k < 8; ++k) dst[k] = static_cast<uint8_t>(r >> (8 * k));
      dst += 8;
      n -= 8;
    }
    if (n > 0) {
      const uint64_t r = next();
      for (int k = 0; k < n; ++k) dst[k] = static_cast<uint8_t>(r >> (8 * k));
    }
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace straw::model::synth
