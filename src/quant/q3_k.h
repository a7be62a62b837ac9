// Q3_K: 256 weights per super-block in 16 groups of 16; y = d * sc_g * (q - 4) with q a 3-bit level
// 0..7 and a signed 6-bit scale sc_g (-32..31) per group.
//
// Layout (110 bytes): hmask[32] | qs[64] | scales[12] | d (fp16).
//  - The low 2 bits of each level are laid out exactly as Q2_K's qs: element
//    i = 128h + 32p + 16k + l is bits 2p..2p+1 of qs[32h + 16k + l].
//  - The third bit of that element is bit 4h + p of hmask[16k + l] (set = level 4..7).
//  - Scales: sc_g = (low4 | hi2 << 4) - 32 with low4 the low nibble of scales[g] for g < 8 or the
//    high nibble of scales[g - 8] for g >= 8, and hi2 = bits 2(g/4)..2(g/4)+1 of scales[8 + g%4].
#pragma once

#include "quant/format.h"

namespace straw::quant {

struct BlockQ3K {
  uint8_t hmask[32];   // third bit of each level (see above)
  uint8_t qs[64];      // low 2 bits of each level, four planes per byte
  uint8_t scales[12];  // 16 signed 6-bit scales, packed (see above)
  uint16_t d;          // fp16 super-scale
};
static_assert(sizeof(BlockQ3K) == 110 && alignof(BlockQ3K) == 2);

// Scale of group g (0..15), -32..31.
inline int q3k_scale(const uint8_t* scales, int g) {
  const int low4 = g < 8 ? scales[g] & 0xF : scales[g - 8] >> 4;
  const int hi2 = (scales[8 + g % 4] >> (2 * (g / 4))) & 3;
  return (low4 | hi2 << 4) - 32;
}

// Packs 16 scales (-32..31) into the 12-byte field.
inline void q3k_pack_scales(const int* sc, uint8_t* scales) {
  for (int k = 0; k < 12; ++k) scales[k] = 0;
  for (int g = 0; g < 16; ++g) {
    const int v = sc[g] + 32;  // 0..63
    if (g < 8)
      scales[g] |= static_cast<uint8_t>(v & 0xF);
    else
      scales[g - 8] |= static_cast<uint8_t>((v & 0xF) << 4);
    scales[8 + g % 4] |= static_cast<uint8_t>((v >> 4) << (2 * (g / 4)));
  }
}

struct Q3K {
  using Block = BlockQ3K;
  static constexpr Type kType = Type::Q3_K;
  static constexpr int kBlockSize = kSuperBlock;

  static void dequantize(const Block& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    for (int h = 0; h < 2; ++h) {
      for (int p = 0; p < 4; ++p) {
        const uint8_t hbit = static_cast<uint8_t>(1u << (4 * h + p));
        for (int k = 0; k < 2; ++k) {
          const float dl = d * static_cast<float>(q3k_scale(b.scales, 8 * h + 2 * p + k));
          const uint8_t* q = b.qs + 32 * h + 16 * k;
          const uint8_t* hm = b.hmask + 16 * k;
          float* out = y + 128 * h + 32 * p + 16 * k;
          for (int l = 0; l < 16; ++l) {
            const int level = ((q[l] >> (2 * p)) & 3) - ((hm[l] & hbit) ? 0 : 4);
            out[l] = dl * static_cast<float>(level);
          }
        }
      }
    }
  }

  // Per group: the signed scale of least squared error over candidate steps; d maps the largest
  // |scale| to 31, and each group's 6-bit scale is refined (±1) by error.
  static void quantize(const float* x, Block& b);
};

}  // namespace straw::quant
