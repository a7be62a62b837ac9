#include "quant/q4_1.h"

#include <cmath>

#include "quant/fit.h"

namespace straw::quant {

void Q4_1::quantize(const float* x, Block& b) {
  float lo = x[0], hi = x[0];
  for (int j = 1; j < 32; ++j) {
    lo = std::fmin(lo, x[j]);
    hi = std::fmax(hi, x[j]);
  }
  const float d = (hi - lo) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = fp32_to_fp16(d);
  b.m = fp32_to_fp16(lo);
  for (int j = 0; j < 16; ++j) {
    const int q0 = floor_level((x[j] - lo) * id + 0.5f, 15);
    const int q1 = floor_level((x[j + 16] - lo) * id + 0.5f, 15);
    b.qs[j] = static_cast<uint8_t>(q0 | q1 << 4);
  }
}

}  // namespace straw::quant
