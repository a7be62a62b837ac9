// Q5_K: Q4_K with a fifth bit per level: y = d * sc_s * q - dmin * m_s, q a 5-bit level 0..31.
//
// Layout (176 bytes): d (fp16) | dmin (fp16) | scales[12] | qh[32] | qs[128].
//  - scales and the low 4 bits in qs exactly as Q4_K (see q4_k.h).
//  - The fifth bit of element 64c + l (l < 32, low nibble of qs[32c + l]) is bit 2c of qh[l]; that
//  of
//    element 64c + 32 + l (high nibble) is bit 2c + 1 of qh[l].
#pragma once

#include "quant/q4_k.h"

namespace straw::quant {

struct BlockQ5K {
  uint16_t d;          // fp16 super-scale of the scales
  uint16_t dmin;       // fp16 super-scale of the mins
  uint8_t scales[12];  // as Q4_K
  uint8_t qh[32];      // fifth bits (see above)
  uint8_t qs[128];     // low 4 bits, as Q4_K
};
static_assert(sizeof(BlockQ5K) == 176 && alignof(BlockQ5K) == 2);

struct Q5K {
  using Block = BlockQ5K;
  static constexpr Type kType = Type::Q5_K;
  static constexpr int kBlockSize = kSuperBlock;

  static void dequantize(const Block& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    const float dmin = fp16_to_fp32(b.dmin);
    for (int c = 0; c < 4; ++c) {
      const KScaleMin lo = kquant_scale_min(b.scales, 2 * c);
      const KScaleMin hi = kquant_scale_min(b.scales, 2 * c + 1);
      const float d_lo = d * lo.sc, m_lo = dmin * lo.m;
      const float d_hi = d * hi.sc, m_hi = dmin * hi.m;
      const uint8_t* q = b.qs + 32 * c;
      float* out = y + 64 * c;
      for (int l = 0; l < 32; ++l) {
        const int q_lo = (q[l] & 0xF) | ((b.qh[l] >> (2 * c)) & 1) << 4;
        const int q_hi = (q[l] >> 4) | ((b.qh[l] >> (2 * c + 1)) & 1) << 4;
        out[l] = d_lo * static_cast<float>(q_lo) - m_lo;
        out[l + 32] = d_hi * static_cast<float>(q_hi) - m_hi;
      }
    }
  }

  // As Q4_K, with 5-bit levels.
  static void quantize(const float* x, Block& b);
};

}  // namespace straw::quant
