#include "quant/q4_k.h"

#include "quant/fit.h"

namespace straw::quant {

void Q4K::quantize(const float* x, Block& b) {
  AffineSuperBlock sb;
  quantize_affine(x, 8, 32, 15, 63, sb);
  b.d = sb.d;
  b.dmin = sb.dmin;
  kquant_pack_scale_min(sb.sc, sb.m, b.scales);
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l)
      b.qs[32 * c + l] = static_cast<uint8_t>(sb.q[64 * c + l] | sb.q[64 * c + 32 + l] << 4);
}

}  // namespace straw::quant
