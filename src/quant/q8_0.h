// Q8_0: 32 values per block, y = d * q with q a signed byte. Used for weights and, on the CPU, as
// the activation format that Q4_0 / Q5_0 / Q8_0 / IQ4_NL weights are multiplied with.
//
// Layout (34 bytes): d (fp16) | qs[32] (int8).
#pragma once

#include "quant/format.h"

namespace straw::quant {

struct BlockQ8_0 {
  uint16_t d;     // fp16 scale
  int8_t qs[32];  // levels -127..127
};
static_assert(sizeof(BlockQ8_0) == 34 && alignof(BlockQ8_0) == 2);

struct Q8_0 {
  using Block = BlockQ8_0;
  static constexpr Type kType = Type::Q8_0;
  static constexpr int kBlockSize = 32;

  static void dequantize(const Block& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
  }

  // llama.cpp's reference (quantize_row_q8_0_ref), exactly: amax = max |x|, d = amax / 127,
  // id = 1 / d (0 when d is 0), q = roundf(x * id) (ties away from zero). The level uses the float
  // d; the block stores d rounded to fp16. An all-zero block gives d = 0 and q = 0.
  static void quantize(const float* x, Block& b);
};

}  // namespace straw::quant
