// Q5_0: 32 weights per block, y = d * (q - 16) with q a 5-bit level 0..31.
//
// Layout (22 bytes): d (fp16) | qh[4] | qs[16]. The low 4 bits of each level are nibbles as in Q4_0
// (byte j: low nibble = element j, high nibble = element j+16); the fifth bit of element i is bit i
// of qh read as one little-endian uint32.
#pragma once

#include "quant/format.h"

namespace straw::quant {

struct BlockQ5_0 {
  uint16_t d;      // fp16 scale
  uint8_t qh[4];   // bit i (little-endian uint32) = bit 4 of element i's level
  uint8_t qs[16];  // low 4 bits: low nibble = element j, high nibble = element j + 16
};
static_assert(sizeof(BlockQ5_0) == 22 && alignof(BlockQ5_0) == 2);

// The 32 fifth bits of a Q5_0 / Q5_1 block as one word (bit i belongs to element i).
inline uint32_t load_qh32(const uint8_t* qh) {
  return static_cast<uint32_t>(qh[0]) | static_cast<uint32_t>(qh[1]) << 8 |
         static_cast<uint32_t>(qh[2]) << 16 | static_cast<uint32_t>(qh[3]) << 24;
}

inline void store_qh32(uint32_t bits, uint8_t* qh) {
  for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(bits >> (8 * k));
}

struct Q5_0 {
  using Block = BlockQ5_0;
  static constexpr Type kType = Type::Q5_0;
  static constexpr int kBlockSize = 32;

  static void dequantize(const Block& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    const uint32_t qh = load_qh32(b.qh);
    for (int j = 0; j < 16; ++j) {
      const int lo = (b.qs[j] & 0xF) | static_cast<int>((qh >> j) & 1u) << 4;
      const int hi = (b.qs[j] >> 4) | static_cast<int>((qh >> (j + 16)) & 1u) << 4;
      y[j] = static_cast<float>(lo - 16) * d;
      y[j + 16] = static_cast<float>(hi - 16) * d;
    }
  }

  // llama.cpp's reference rule: d = -max / 16 with max the signed extreme (it maps to level 0),
  // q = min(31, floor(x / d + 16.5)).
  static void quantize(const float* x, Block& b);
};

}  // namespace straw::quant
