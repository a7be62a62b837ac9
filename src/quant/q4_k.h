// Q4_K: 256 weights per super-block in 8 sub-blocks of 32; y = d * sc_s * q - dmin * m_s with q a
// 4-bit level 0..15 and an unsigned 6-bit scale sc_s and min m_s per sub-block.
//
// Layout (144 bytes): d (fp16) | dmin (fp16) | scales[12] | qs[128].
//  - scales, for s = 0..3: sc_s = scales[s] & 63 and m_s = scales[s+4] & 63; for s = 4..7:
//      sc_s = (scales[s+4] & 0xF) | (scales[s-4] >> 6) << 4
//      m_s  = (scales[s+4] >> 4)  | (scales[s] >> 6) << 4
//    (bytes 0-7 hold the low 6 bits of sc_0..3 / m_0..3 and, in their top 2 bits, the high bits of
//    sc_4..7 / m_4..7; bytes 8-11 hold the low nibbles of sc_4..7 and m_4..7).
//  - qs: four chunks of 32 bytes, chunk c holding 64 elements: byte 32c + l has element 64c + l
//    (sub-block 2c) in its low nibble and element 64c + 32 + l (sub-block 2c+1) in its high nibble.
#pragma once

#include "quant/format.h"

namespace straw::quant {

struct BlockQ4K {
  uint16_t d;          // fp16 super-scale of the scales
  uint16_t dmin;       // fp16 super-scale of the mins
  uint8_t scales[12];  // 8 scales and 8 mins, 6 bits each (see above)
  uint8_t qs[128];     // 4-bit levels (see above)
};
static_assert(sizeof(BlockQ4K) == 144 && alignof(BlockQ4K) == 2);

// The 12-byte scale/min field shared by Q4_K and Q5_K.
struct KScaleMin {
  uint8_t sc;
  uint8_t m;
};

inline KScaleMin kquant_scale_min(const uint8_t* scales, int s) {
  if (s < 4)
    return {static_cast<uint8_t>(scales[s] & 63), static_cast<uint8_t>(scales[s + 4] & 63)};
  return {static_cast<uint8_t>((scales[s + 4] & 0xF) | (scales[s - 4] >> 6) << 4),
          static_cast<uint8_t>((scales[s + 4] >> 4) | (scales[s] >> 6) << 4)};
}

// Packs 8 scales and 8 mins (each 0..63) into the 12-byte field.
inline void kquant_pack_scale_min(const uint8_t* sc, const uint8_t* m, uint8_t* scales) {
  for (int s = 0; s < 4; ++s) {
    scales[s] = static_cast<uint8_t>((sc[s] & 63) | (sc[s + 4] >> 4) << 6);
    scales[s + 4] = static_cast<uint8_t>((m[s] & 63) | (m[s + 4] >> 4) << 6);
    scales[s + 8] = static_cast<uint8_t>((sc[s + 4] & 0xF) | (m[s + 4] & 0xF) << 4);
  }
}

struct Q4K {
  using Block = BlockQ4K;
  static constexpr Type kType = Type::Q4_K;
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
        out[l] = d_lo * static_cast<float>(q[l] & 0xF) - m_lo;
        out[l + 32] = d_hi * static_cast<float>(q[l] >> 4) - m_hi;
      }
    }
  }

  // Per sub-block: the (scale, min) of least squared error over a range of candidate steps; then d
  // and dmin map the largest scale / min to 63, and each sub-block's 6-bit pair is refined (±1).
  static void quantize(const float* x, Block& b);
};

}  // namespace straw::quant
