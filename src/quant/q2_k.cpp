#include "quant/q2_k.h"

#include "quant/fit.h"

namespace straw::quant {

void Q2K::quantize(const float* x, Block& b) {
  AffineSuperBlock sb;
  quantize_affine(x, 16, 16, 3, 15, sb);
  b.d = sb.d;
  b.dmin = sb.dmin;
  for (int g = 0; g < 16; ++g) b.scales[g] = static_cast<uint8_t>(sb.sc[g] | sb.m[g] << 4);
  // Element i = 128h + 32p + (16k + l) goes to bits 2p..2p+1 of qs[32h + 16k + l].
  for (uint8_t& q : b.qs) q = 0;
  for (int i = 0; i < kSuperBlock; ++i) {
    const int h = i / 128, p = (i / 32) % 4;
    b.qs[32 * h + i % 32] |= static_cast<uint8_t>(sb.q[i] << (2 * p));
  }
}

}  // namespace straw::quant
