// Q2_K: 256 weights per super-block in 16 groups of 16; y = d * sc_g * q - dmin * m_g with q a
// 2-bit level 0..3 and a 4-bit scale sc_g and 4-bit min m_g per group.
//
// Layout (84 bytes): scales[16] | qs[64] | d (fp16) | dmin (fp16).
//  - scales[g]: low nibble = sc_g, high nibble = m_g; group g covers elements 16g .. 16g+15.
//  - qs: two halves of 32 bytes, each holding 128 elements as four 2-bit planes. Element
//    i = 128h + 32p + 16k + l (half h, plane p 0..3, k 0..1, l 0..15) is bits 2p..2p+1 of byte
//    qs[32h + 16k + l].
#pragma once

#include "quant/format.h"

namespace straw::quant {

struct BlockQ2K {
  uint8_t scales[16];  // per group of 16: low nibble scale, high nibble min
  uint8_t qs[64];      // 2-bit levels, four planes per byte (see above)
  uint16_t d;          // fp16 super-scale of the scales
  uint16_t dmin;       // fp16 super-scale of the mins
};
static_assert(sizeof(BlockQ2K) == 84 && alignof(BlockQ2K) == 2);

struct Q2K {
  using Block = BlockQ2K;
  static constexpr Type kType = Type::Q2_K;
  static constexpr int kBlockSize = kSuperBlock;

  static void dequantize(const Block& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    const float dmin = fp16_to_fp32(b.dmin);
    for (int h = 0; h < 2; ++h) {
      for (int p = 0; p < 4; ++p) {
        for (int k = 0; k < 2; ++k) {
          const uint8_t sc = b.scales[8 * h + 2 * p + k];
          const float dl = d * static_cast<float>(sc & 0xF);
          const float ml = dmin * static_cast<float>(sc >> 4);
          const uint8_t* q = b.qs + 32 * h + 16 * k;
          float* out = y + 128 * h + 32 * p + 16 * k;
          for (int l = 0; l < 16; ++l) out[l] = dl * static_cast<float>((q[l] >> (2 * p)) & 3) - ml;
        }
      }
    }
  }

  // Per group: the (scale, min) of least squared error over a range of candidate steps; then d and
  // dmin map the largest scale / min to 15, and each group's 4-bit pair is refined (±1) by error.
  static void quantize(const float* x, Block& b);
};

}  // namespace straw::quant
