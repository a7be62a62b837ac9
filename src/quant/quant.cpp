#include "quant/quant.h"

#include <cstdint>

#include "quant/dispatch.h"
#include "util/str.h"

namespace straw::quant {
namespace {

// Checks a row's length and pointer alignment for format F; returns the number of blocks.
template <Format F>
int64_t row_blocks(const char* what, const void* p, int64_t n) {
  if (n < 0 || n % F::kBlockSize != 0)
    fail(what, ": row of ", n, " elements of type ", type_name(F::kType),
         " is not a multiple of its block size ", F::kBlockSize);
  if (reinterpret_cast<uintptr_t>(p) % alignof(typename F::Block) != 0)
    fail(what, ": ", type_name(F::kType), " data at ", p, " is not aligned to ",
         alignof(typename F::Block), " bytes");
  return n / F::kBlockSize;
}

}  // namespace

void dequantize_row(Type t, const void* src, float* dst, int64_t n) {
  dispatch(t, [&]<class F>(FormatTag<F>) {
    const int64_t nb = row_blocks<F>("dequantize_row", src, n);
    dequantize_blocks<F>(static_cast<const typename F::Block*>(src), dst, nb);
  });
}

void quantize_row(Type t, const float* src, void* dst, int64_t n) {
  dispatch(t, [&]<class F>(FormatTag<F>) {
    if constexpr (has_quantize<F>) {
      const int64_t nb = row_blocks<F>("quantize_row", dst, n);
      quantize_blocks<F>(src, static_cast<typename F::Block*>(dst), nb);
    } else {
      fail("quantize_row: straw has no quantizer for type ", type_name(F::kType));
    }
  });
}

bool can_quantize(Type t) {
  const TypeInfo* ti = find_type(static_cast<uint32_t>(t));
  if (!ti || !ti->supported) return false;
  return dispatch(t, []<class F>(FormatTag<F>) { return has_quantize<F>; });
}

}  // namespace straw::quant
