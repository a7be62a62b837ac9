// IQ4_NL: 32 weights per block, y = d * kIQ4Values[q] with q a 4-bit index into a fixed non-linear
// table of levels (denser near zero).
//
// Layout (18 bytes): d (fp16) | qs[16], nibbles as in Q4_0 (low = element j, high = element j+16).
#pragma once

#include "quant/format.h"

namespace straw::quant {

// The 16 levels of IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl), ascending.
inline constexpr int8_t kIQ4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

struct BlockIQ4NL {
  uint16_t d;      // fp16 scale
  uint8_t qs[16];  // table indices: low nibble = element j, high nibble = element j + 16
};
static_assert(sizeof(BlockIQ4NL) == 18 && alignof(BlockIQ4NL) == 2);

struct IQ4NL {
  using Block = BlockIQ4NL;
  static constexpr Type kType = Type::IQ4_NL;
  static constexpr int kBlockSize = 32;

  static void dequantize(const Block& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(kIQ4Values[b.qs[j] & 0xF]);
      y[j + 16] = d * static_cast<float>(kIQ4Values[b.qs[j] >> 4]);
    }
  }

  // The signed scale of least squared error over candidate scales (each element takes its nearest
  // table level), then the indices are recomputed against the stored fp16 d.
  static void quantize(const float* x, Block& b);
};

}  // namespace straw::quant
