#include "quant/q8_0.h"

#include "quant/fit.h"

namespace straw::quant {

void Q8_0::quantize(const float* x, Block& b) {
  const float d = extreme(x, 32).amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = fp32_to_fp16(d);
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(round_level(x[j] * id, -127, 127));
}

}  // namespace straw::quant
