// Q4_1: 32 weights per block, y = d * q + m with q a 4-bit level 0..15 and m the block minimum.
//
// Layout (20 bytes): d (fp16) | m (fp16) | qs[16], nibbles as in Q4_0 (low = element j, high =
// j+16).
#pragma once

#include "quant/format.h"

namespace straw::quant {

struct BlockQ4_1 {
  uint16_t d;      // fp16 scale
  uint16_t m;      // fp16 offset (the block minimum)
  uint8_t qs[16];  // nibbles: low = element j, high = element j + 16
};
static_assert(sizeof(BlockQ4_1) == 20 && alignof(BlockQ4_1) == 2);

struct Q4_1 {
  using Block = BlockQ4_1;
  static constexpr Type kType = Type::Q4_1;
  static constexpr int kBlockSize = 32;

  static void dequantize(const Block& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    const float m = fp16_to_fp32(b.m);
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(b.qs[j] & 0xF) * d + m;
      y[j + 16] = static_cast<float>(b.qs[j] >> 4) * d + m;
    }
  }

  // llama.cpp's reference rule: m = min, d = (max - min) / 15, q = min(15, floor((x - m) / d +
  // 0.5)).
  static void quantize(const float* x, Block& b);
};

}  // namespace straw::quant
