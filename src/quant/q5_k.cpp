#include "quant/q5_k.h"

#include "quant/fit.h"

namespace straw::quant {

void Q5K::quantize(const float* x, Block& b) {
  AffineSuperBlock sb;
  quantize_affine(x, 8, 32, 31, 63, sb);
  b.d = sb.d;
  b.dmin = sb.dmin;
  kquant_pack_scale_min(sb.sc, sb.m, b.scales);
  for (uint8_t& h : b.qh) h = 0;
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      const int lo = sb.q[64 * c + l], hi = sb.q[64 * c + 32 + l];
      b.qs[32 * c + l] = static_cast<uint8_t>((lo & 0xF) | (hi & 0xF) << 4);
      b.qh[l] |= static_cast<uint8_t>((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
    }
  }
}

}  // namespace straw::quant
