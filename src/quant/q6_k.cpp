#include "quant/q6_k.h"

#include "quant/fit.h"

namespace straw::quant {

void Q6K::quantize(const float* x, Block& b) {
  ScaledSuperBlock sb;
  quantize_symmetric(x, 16, 16, -32, 31, 127, sb);
  b.d = sb.d;
  for (int g = 0; g < 16; ++g) b.scales[g] = static_cast<int8_t>(sb.sc[g]);
  // Level L = q + 32 (0..63) of element 128h + 32r + l (r = 0..3): low 4 bits to nibble r / 2 of
  // ql[64h + 32(r % 2) + l], high 2 bits to bits 2r..2r+1 of qh[32h + l].
  for (uint8_t& q : b.ql) q = 0;
  for (uint8_t& q : b.qh) q = 0;
  for (int i = 0; i < kSuperBlock; ++i) {
    const int h = i / 128, r = (i / 32) % 4, l = i % 32;
    const int level = sb.q[i] + 32;
    b.ql[64 * h + 32 * (r % 2) + l] |= static_cast<uint8_t>((level & 0xF) << (4 * (r / 2)));
    b.qh[32 * h + l] |= static_cast<uint8_t>((level >> 4) << (2 * r));
  }
}

}  // namespace straw::quant
