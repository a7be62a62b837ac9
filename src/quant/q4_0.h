// Q4_0: 32 weights per block, y = d * (q - 8) with q a 4-bit level 0..15.
//
// Layout (18 bytes): d (fp16) | qs[16]. Byte j holds element j in its low nibble and element j+16
// in its high nibble (the low nibbles are the first half of the block).
#pragma once

#include "quant/format.h"

namespace straw::quant {

struct BlockQ4_0 {
  uint16_t d;      // fp16 scale
  uint8_t qs[16];  // nibbles: low = element j, high = element j + 16
};
static_assert(sizeof(BlockQ4_0) == 18 && alignof(BlockQ4_0) == 2);

struct Q4_0 {
  using Block = BlockQ4_0;
  static constexpr Type kType = Type::Q4_0;
  static constexpr int kBlockSize = 32;

  static void dequantize(const Block& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((b.qs[j] & 0xF) - 8) * d;
      y[j + 16] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
    }
  }

  // llama.cpp's reference rule: the element of largest magnitude maps to level 0 (value -8 * d), so
  // d = -max / 8 with max the signed extreme, and q = min(15, floor(x / d + 8.5)).
  static void quantize(const float* x, Block& b);
};

}  // namespace straw::quant
