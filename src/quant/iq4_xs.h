// IQ4_XS: 256 weights per super-block in 8 sub-blocks of 32; y = d * (ls_s - 32) * kIQ4Values[q]
// with a 6-bit sub-block scale ls_s (0..63, offset 32) and the IQ4_NL table.
//
// Layout (136 bytes): d (fp16) | scales_h (u16, little-endian) | scales_l[4] | qs[128].
//  - ls_s = low4 | hi2 << 4 with low4 = bits 4(s%2)..4(s%2)+3 of scales_l[s/2] and hi2 = bits
//    2s..2s+1 of scales_h.
//  - qs: sub-block s uses bytes 16s .. 16s+15, nibbles as in IQ4_NL (low = element 32s + j, high =
//    element 32s + 16 + j).
#pragma once

#include "quant/iq4_nl.h"

namespace straw::quant {

struct BlockIQ4XS {
  uint16_t d;           // fp16 super-scale
  uint16_t scales_h;    // high 2 bits of each sub-block scale
  uint8_t scales_l[4];  // low 4 bits of each sub-block scale, two per byte
  uint8_t qs[128];      // table indices (see above)
};
static_assert(sizeof(BlockIQ4XS) == 136 && alignof(BlockIQ4XS) == 2);

struct IQ4XS {
  using Block = BlockIQ4XS;
  static constexpr Type kType = Type::IQ4_XS;
  static constexpr int kBlockSize = kSuperBlock;

  // Sub-block s's scale, 0..63 (the multiplier is this minus 32).
  static int sub_scale(const Block& b, int s) {
    return ((b.scales_l[s / 2] >> (4 * (s % 2))) & 0xF) | ((b.scales_h >> (2 * s)) & 3) << 4;
  }

  static void dequantize(const Block& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    for (int s = 0; s < 8; ++s) {
      const float dl = d * static_cast<float>(sub_scale(b, s) - 32);
      const uint8_t* q = b.qs + 16 * s;
      float* out = y + 32 * s;
      for (int j = 0; j < 16; ++j) {
        out[j] = dl * static_cast<float>(kIQ4Values[q[j] & 0xF]);
        out[j + 16] = dl * static_cast<float>(kIQ4Values[q[j] >> 4]);
      }
    }
  }

  // Per sub-block: the signed scale of least squared error (as IQ4_NL); d maps the largest |scale|
  // to 31 and each 6-bit scale is refined (±1) by error; indices use the stored scales.
  static void quantize(const float* x, Block& b);
};

}  // namespace straw::quant
