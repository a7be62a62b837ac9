#include "quant/iq4_nl.h"

#include "quant/fit.h"

namespace straw::quant {

void IQ4NL::quantize(const float* x, Block& b) {
  b.d = fp32_to_fp16(fit_iq4(x, 32));
  int8_t q[32];
  iq4_assign(x, 32, fp16_to_fp32(b.d), q);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(q[j] | q[j + 16] << 4);
}

}  // namespace straw::quant
