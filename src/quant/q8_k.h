// Q8_K: 256 values per block, y = d * q with a float d and signed byte levels, plus the sums of
// each 16 levels (bsums) for the min terms of K-quant dot products. The CPU activation format for
// Q2_K..Q6_K and IQ4_XS weights.
//
// Layout (292 bytes): d (float32) | qs[256] (int8) | bsums[16] (int16).
#pragma once

#include "quant/format.h"

namespace straw::quant {

struct BlockQ8K {
  float d;            // scale; negative when the extreme input is positive (see quantize)
  int8_t qs[256];     // levels -127..127
  int16_t bsums[16];  // bsums[g] = sum of qs[16g .. 16g+15]
};
static_assert(sizeof(BlockQ8K) == 292 && alignof(BlockQ8K) == 4);

struct Q8K {
  using Block = BlockQ8K;
  static constexpr Type kType = Type::Q8_K;
  static constexpr int kBlockSize = kSuperBlock;

  static void dequantize(const Block& b, float* y) {
    for (int j = 0; j < kSuperBlock; ++j) y[j] = b.d * static_cast<float>(b.qs[j]);
  }

  // llama.cpp's reference (quantize_row_q8_K_ref), exactly: max = the signed value of largest |x|
  // (first one on ties), iscale = -127 / max, q = min(127, nearest_int(iscale * x)) with ties to
  // even, d = 1 / iscale (so d < 0 when max > 0, and the extreme maps to -127); bsums per 16. An
  // all-zero block gives d = 0, q = 0 and bsums = 0.
  static void quantize(const float* x, Block& b);
};

}  // namespace straw::quant
