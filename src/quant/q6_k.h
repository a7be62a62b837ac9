// Q6_K: 256 weights per super-block in 16 groups of 16; y = d * sc_g * (q - 32) with q a 6-bit
// level 0..63 and a signed 8-bit scale sc_g per group.
//
// Layout (210 bytes): ql[128] | qh[64] | scales[16] (int8) | d (fp16). Two halves of 128 elements;
// half h uses ql[64h ..], qh[32h ..] and scales[8h ..]. Within a half, for l = 0..31:
//   element 128h + l      : low 4 bits = ql[64h + l] & 0xF,      high 2 bits = qh[32h + l] bits 0-1
//   element 128h + 32 + l : low 4 bits = ql[64h + 32 + l] & 0xF, high 2 bits = qh[32h + l] bits 2-3
//   element 128h + 64 + l : low 4 bits = ql[64h + l] >> 4,       high 2 bits = qh[32h + l] bits 4-5
//   element 128h + 96 + l : low 4 bits = ql[64h + 32 + l] >> 4,  high 2 bits = qh[32h + l] bits 6-7
// and element i belongs to group i / 16 (scales in element order).
#pragma once

#include "quant/format.h"

namespace straw::quant {

struct BlockQ6K {
  uint8_t ql[128];    // low 4 bits of each level (see above)
  uint8_t qh[64];     // high 2 bits of each level
  int8_t scales[16];  // signed scale per group of 16
  uint16_t d;         // fp16 super-scale
};
static_assert(sizeof(BlockQ6K) == 210 && alignof(BlockQ6K) == 2);

struct Q6K {
  using Block = BlockQ6K;
  static constexpr Type kType = Type::Q6_K;
  static constexpr int kBlockSize = kSuperBlock;

  static void dequantize(const Block& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b.ql + 64 * h;
      const uint8_t* qh = b.qh + 32 * h;
      const int8_t* sc = b.scales + 8 * h;
      float* out = y + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int g = l / 16;
        const int q0 = ((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32;
        const int q1 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
        const int q2 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
        const int q3 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
        out[l] = d * static_cast<float>(sc[g]) * static_cast<float>(q0);
        out[l + 32] = d * static_cast<float>(sc[g + 2]) * static_cast<float>(q1);
        out[l + 64] = d * static_cast<float>(sc[g + 4]) * static_cast<float>(q2);
        out[l + 96] = d * static_cast<float>(sc[g + 6]) * static_cast<float>(q3);
      }
    }
  }

  // Per group: the signed scale of least squared error over candidate steps; d maps the largest
  // |scale| to 127, and each group's 8-bit scale is refined (±1) by error.
  static void quantize(const float* x, Block& b);
};

}  // namespace straw::quant
