// Q8_1: 32 values per block, y = d * q, plus s, a precomputed sum for the min/offset terms of
// Q4_1 / Q5_1 dot products. Activation-only (no weights are stored in it).
//
// Layout (36 bytes): d (fp16) | s (fp16) | qs[32] (int8).
//
// What s holds differs between llama.cpp's backends: the CPU reference (which this quantizer
// follows) stores s = d * sum(q) with the float d, so s * (weight offset) is exactly what the
// dequantized activations sum to; llama.cpp's CUDA quantizer stores s = sum(x) of the unquantized
// inputs instead. A dot kernel must pair with the quantizer that made its blocks.
#pragma once

#include "quant/format.h"

namespace straw::quant {

struct BlockQ8_1 {
  uint16_t d;     // fp16 scale
  uint16_t s;     // fp16: d * sum(qs) (CPU reference semantics, see above)
  int8_t qs[32];  // levels -127..127
};
static_assert(sizeof(BlockQ8_1) == 36 && alignof(BlockQ8_1) == 2);

struct Q8_1 {
  using Block = BlockQ8_1;
  static constexpr Type kType = Type::Q8_1;
  static constexpr int kBlockSize = 32;

  static void dequantize(const Block& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
  }

  // llama.cpp's CPU reference (quantize_row_q8_1_ref), exactly: d = amax / 127, q = roundf(x / d)
  // computed as x * (1 / d), s = fp16(float(sum(q)) * d) with the float (unrounded) d; d stored as
  // fp16. An all-zero block gives d = 0, s = 0 and q = 0.
  static void quantize(const float* x, Block& b);
};

}  // namespace straw::quant
