#include "quant/q4_0.h"

#include "quant/fit.h"

namespace straw::quant {

void Q4_0::quantize(const float* x, Block& b) {
  const float d = extreme(x, 32).value / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = fp32_to_fp16(d);
  for (int j = 0; j < 16; ++j) {
    const int lo = floor_level(x[j] * id + 8.5f, 15);
    const int hi = floor_level(x[j + 16] * id + 8.5f, 15);
    b.qs[j] = static_cast<uint8_t>(lo | hi << 4);
  }
}

}  // namespace straw::quant
