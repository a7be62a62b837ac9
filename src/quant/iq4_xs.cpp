#include "quant/iq4_xs.h"

#include "quant/fit.h"

namespace straw::quant {

void IQ4XS::quantize(const float* x, Block& b) {
  ScaledSuperBlock sb;
  quantize_iq4(x, 8, 32, 31, sb);
  b.d = sb.d;
  b.scales_h = 0;
  for (uint8_t& s : b.scales_l) s = 0;
  for (int s = 0; s < 8; ++s) {
    const int ls = sb.sc[s] + 32;  // 1..63
    b.scales_l[s / 2] |= static_cast<uint8_t>((ls & 0xF) << (4 * (s % 2)));
    b.scales_h |= static_cast<uint16_t>((ls >> 4) << (2 * s));
    const int8_t* q = sb.q + 32 * s;
    for (int j = 0; j < 16; ++j) b.qs[16 * s + j] = static_cast<uint8_t>(q[j] | q[j + 16] << 4);
  }
}

}  // namespace straw::quant
