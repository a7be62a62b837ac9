// The runtime quantization API: rows of any implemented type to and from float.
//
// Each call dispatches on the type once and then loops over the row's blocks in a loop compiled for
// that format. A row is n elements, n a multiple of the type's block size; src/dst are
// row_bytes(t, n) bytes, aligned at least as the block struct (2 bytes; 4 for F32 and Q8_K), which
// GGUF's tensor alignment guarantees. Errors (unsupported type, bad n, misaligned pointer) throw
// straw::Error.
#pragma once

#include <cstdint>

#include "quant/types.h"

namespace straw::quant {

// Dequantizes n elements of type t at src into dst (n floats).
void dequantize_row(Type t, const void* src, float* dst, int64_t n);

// Quantizes n floats into row_bytes(t, n) bytes at dst. The activation formats (Q8_0, Q8_1, Q8_K)
// follow llama.cpp's CPU reference quantizers exactly; weight formats see their headers. Inputs
// must be finite (non-finite values give unspecified levels).
void quantize_row(Type t, const float* src, void* dst, int64_t n);

// Whether quantize_row supports t (false for unimplemented types too).
bool can_quantize(Type t);

}  // namespace straw::quant
