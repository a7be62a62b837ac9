#include "quant/q8_1.h"

#include "quant/fit.h"

namespace straw::quant {

void Q8_1::quantize(const float* x, Block& b) {
  const float d = extreme(x, 32).amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    const int q = round_level(x[j] * id, -127, 127);
    b.qs[j] = static_cast<int8_t>(q);
    sum += q;
  }
  b.d = fp32_to_fp16(d);
  b.s = fp32_to_fp16(static_cast<float>(sum) * d);
}

}  // namespace straw::quant
