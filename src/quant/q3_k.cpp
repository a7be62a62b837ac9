#include "quant/q3_k.h"

#include "quant/fit.h"

namespace straw::quant {

void Q3K::quantize(const float* x, Block& b) {
  ScaledSuperBlock sb;
  quantize_symmetric(x, 16, 16, -4, 3, 31, sb);
  b.d = sb.d;
  q3k_pack_scales(sb.sc, b.scales);
  // Level L = q + 4 (0..7) of element i = 128h + 32p + (16k + l): bits 0-1 go to bits 2p..2p+1 of
  // qs[32h + 16k + l], bit 2 to bit 4h + p of hmask[16k + l].
  for (uint8_t& q : b.qs) q = 0;
  for (uint8_t& m : b.hmask) m = 0;
  for (int i = 0; i < kSuperBlock; ++i) {
    const int h = i / 128, p = (i / 32) % 4;
    const int level = sb.q[i] + 4;
    b.qs[32 * h + i % 32] |= static_cast<uint8_t>((level & 3) << (2 * p));
    b.hmask[i % 32] |= static_cast<uint8_t>((level >> 2) << (4 * h + p));
  }
}

}  // namespace straw::quant
