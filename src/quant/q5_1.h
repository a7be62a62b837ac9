// Q5_1: 32 weights per block, y = d * q + m with q a 5-bit level 0..31 and m the block minimum.
//
// Layout (24 bytes): d (fp16) | m (fp16) | qh[4] | qs[16]; the level bits are laid out as in Q5_0.
#pragma once

#include "quant/q5_0.h"

namespace straw::quant {

struct BlockQ5_1 {
  uint16_t d;      // fp16 scale
  uint16_t m;      // fp16 offset (the block minimum)
  uint8_t qh[4];   // bit i (little-endian uint32) = bit 4 of element i's level
  uint8_t qs[16];  // low 4 bits: low nibble = element j, high nibble = element j + 16
};
static_assert(sizeof(BlockQ5_1) == 24 && alignof(BlockQ5_1) == 2);

struct Q5_1 {
  using Block = BlockQ5_1;
  static constexpr Type kType = Type::Q5_1;
  static constexpr int kBlockSize = 32;

  static void dequantize(const Block& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    const float m = fp16_to_fp32(b.m);
    const uint32_t qh = load_qh32(b.qh);
    for (int j = 0; j < 16; ++j) {
      const int lo = (b.qs[j] & 0xF) | static_cast<int>((qh >> j) & 1u) << 4;
      const int hi = (b.qs[j] >> 4) | static_cast<int>((qh >> (j + 16)) & 1u) << 4;
      y[j] = static_cast<float>(lo) * d + m;
      y[j + 16] = static_cast<float>(hi) * d + m;
    }
  }

  // llama.cpp's reference rule: m = min, d = (max - min) / 31, q = min(31, floor((x - m) / d +
  // 0.5)).
  static void quantize(const float* x, Block& b);
};

}  // namespace straw::quant
