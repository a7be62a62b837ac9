#include "quant/q8_k.h"

#include "quant/fit.h"

namespace straw::quant {

void Q8K::quantize(const float* x, Block& b) {
  const Extreme ext = extreme(x, kSuperBlock);
  if (ext.amax == 0.0f) {
    b.d = 0.0f;
    for (int8_t& q : b.qs) q = 0;
    for (int16_t& s : b.bsums) s = 0;
    return;
  }
  const float iscale = -127.0f / ext.value;
  for (int j = 0; j < kSuperBlock; ++j)
    b.qs[j] = static_cast<int8_t>(clamp_int(nearest_int(iscale * x[j]), -128, 127));
  for (int g = 0; g < 16; ++g) {
    int sum = 0;
    for (int l = 0; l < 16; ++l) sum += b.qs[16 * g + l];
    b.bsums[g] = static_cast<int16_t>(sum);
  }
  b.d = 1.0f / iscale;
}

}  // namespace straw::quant
