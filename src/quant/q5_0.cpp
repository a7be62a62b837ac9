#include "quant/q5_0.h"

#include "quant/fit.h"

namespace straw::quant {

void Q5_0::quantize(const float* x, Block& b) {
  const float d = extreme(x, 32).value / -16.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = fp32_to_fp16(d);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const int lo = floor_level(x[j] * id + 16.5f, 31);
    const int hi = floor_level(x[j + 16] * id + 16.5f, 31);
    b.qs[j] = static_cast<uint8_t>((lo & 0xF) | (hi & 0xF) << 4);
    qh |= static_cast<uint32_t>(lo >> 4) << j | static_cast<uint32_t>(hi >> 4) << (j + 16);
  }
  store_qh32(qh, b.qh);
}

}  // namespace straw::quant
