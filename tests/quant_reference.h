// Test helpers for the quant tests: the relative RMSE measure, and an independent per-element
// reader for every format, written from the format definitions (docs: formats-and-architectures.md
// section 3) with the opposite loop structure of the headers' dequantizers: each output index is
// mapped to its sub-block, byte, nibble and bit. The arithmetic (operand order) follows the
// definitions, so agreement with the headers is expected bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "quant/formats.h"

namespace straw::quant::testing {

// ||y - x|| / ||x||.
inline double rel_rmse(const std::vector<float>& y, const std::vector<float>& x) {
  double e = 0, s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    e += (static_cast<double>(y[i]) - x[i]) * (static_cast<double>(y[i]) - x[i]);
    s += static_cast<double>(x[i]) * x[i];
  }
  return std::sqrt(e / s);
}

inline float h2f(uint16_t h) {
  return fp16_to_fp32(h);
}

// Bit k of a byte array read as one little-endian bit string.
inline int bit_at(const uint8_t* bytes, int k) {
  return (bytes[k / 8] >> (k % 8)) & 1;
}

// Nibble of element i in the "low nibbles first half, high nibbles second half" layout of a
// 32-element group whose 16 bytes start at qs.
inline int split_nibble(const uint8_t* qs, int i) {
  return i < 16 ? qs[i] & 0xF : qs[i - 16] >> 4;
}

// Unsigned 6-bit scale and min of sub-block s (0..7) of the Q4_K / Q5_K 12-byte field, read as
// bit fields: sub-blocks 0-3 own bits 0-5 of bytes s and s+4; sub-blocks 4-7 take their low 4 bits
// from the nibbles of byte s+4 and their high 2 bits from bits 6-7 of bytes s-4 and s.
inline int k4_scale(const uint8_t* f, int s) {
  return s < 4 ? f[s] % 64 : (f[s + 4] % 16) + 16 * (f[s - 4] / 64);
}
inline int k4_min(const uint8_t* f, int s) {
  return s < 4 ? f[s + 4] % 64 : (f[s + 4] / 16) + 16 * (f[s] / 64);
}

inline float element(const BlockF32& b, int) {
  return b.value;
}
inline float element(const BlockF16& b, int) {
  return h2f(b.bits);
}
inline float element(const BlockBF16& b, int) {
  const uint32_t u = static_cast<uint32_t>(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float element(const BlockQ4_0& b, int i) {
  return static_cast<float>(split_nibble(b.qs, i) - 8) * h2f(b.d);
}
inline float element(const BlockQ4_1& b, int i) {
  return static_cast<float>(split_nibble(b.qs, i)) * h2f(b.d) + h2f(b.m);
}
inline float element(const BlockQ5_0& b, int i) {
  const int q = split_nibble(b.qs, i) + 16 * bit_at(b.qh, i);
  return static_cast<float>(q - 16) * h2f(b.d);
}
inline float element(const BlockQ5_1& b, int i) {
  const int q = split_nibble(b.qs, i) + 16 * bit_at(b.qh, i);
  return static_cast<float>(q) * h2f(b.d) + h2f(b.m);
}
inline float element(const BlockQ8_0& b, int i) {
  return static_cast<float>(b.qs[i]) * h2f(b.d);
}
inline float element(const BlockQ8_1& b, int i) {
  return static_cast<float>(b.qs[i]) * h2f(b.d);
}
inline float element(const BlockQ8K& b, int i) {
  return b.d * static_cast<float>(b.qs[i]);
}

// Q2_K / Q3_K share the 2-bit layout: element i sits in byte 32*(i/128) + i%32, bit plane
// (i%128)/32; its group of 16 is i/16.
inline int k2_bits(const uint8_t* qs, int i) {
  return (qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
}

inline float element(const BlockQ2K& b, int i) {
  const int sc = b.scales[i / 16] % 16, m = b.scales[i / 16] / 16;
  return (h2f(b.d) * static_cast<float>(sc)) * static_cast<float>(k2_bits(b.qs, i)) -
         h2f(b.dmin) * static_cast<float>(m);
}

inline float element(const BlockQ3K& b, int i) {
  const int g = i / 16;
  const int low4 = g < 8 ? b.scales[g] % 16 : b.scales[g - 8] / 16;
  const int hi2 = (b.scales[8 + g % 4] >> (2 * (g / 4))) % 4;
  const int scale = low4 + 16 * hi2 - 32;
  // The high bit of element i is bit i/32 of hmask[i%32] (set: no -4 offset).
  const int high = (b.hmask[i % 32] >> (i / 32)) & 1;
  const int q = k2_bits(b.qs, i) - (high ? 0 : 4);
  return (h2f(b.d) * static_cast<float>(scale)) * static_cast<float>(q);
}

inline float element(const BlockQ4K& b, int i) {
  const int s = i / 32;
  const uint8_t byte = b.qs[32 * (i / 64) + i % 32];
  const int q = s % 2 == 0 ? byte & 0xF : byte >> 4;
  return (h2f(b.d) * static_cast<float>(k4_scale(b.scales, s))) * static_cast<float>(q) -
         h2f(b.dmin) * static_cast<float>(k4_min(b.scales, s));
}

inline float element(const BlockQ5K& b, int i) {
  const int s = i / 32;
  const uint8_t byte = b.qs[32 * (i / 64) + i % 32];
  const int q = (s % 2 == 0 ? byte & 0xF : byte >> 4) + 16 * ((b.qh[i % 32] >> s) & 1);
  return (h2f(b.d) * static_cast<float>(k4_scale(b.scales, s))) * static_cast<float>(q) -
         h2f(b.dmin) * static_cast<float>(k4_min(b.scales, s));
}

inline float element(const BlockQ6K& b, int i) {
  const int h = i / 128, r = (i % 128) / 32, l = i % 32;
  const uint8_t lo_byte = b.ql[64 * h + 32 * (r % 2) + l];
  const int lo = r < 2 ? lo_byte & 0xF : lo_byte >> 4;
  const int hi = (b.qh[32 * h + l] >> (2 * r)) & 3;
  return h2f(b.d) * static_cast<float>(b.scales[i / 16]) * static_cast<float>(lo + 16 * hi - 32);
}

inline float element(const BlockIQ4NL& b, int i) {
  return h2f(b.d) * static_cast<float>(kIQ4Values[split_nibble(b.qs, i)]);
}

inline float element(const BlockIQ4XS& b, int i) {
  const int s = i / 32;
  const int low4 = (b.scales_l[s / 2] >> (4 * (s % 2))) & 0xF;
  const int hi2 = (b.scales_h >> (2 * s)) & 3;
  const float dl = h2f(b.d) * static_cast<float>(low4 + 16 * hi2 - 32);
  return dl * static_cast<float>(kIQ4Values[split_nibble(b.qs + 16 * s, i % 32)]);
}

}  // namespace straw::quant::testing
