// Inline AVX-512 helpers shared by the *_avx512.cpp files (include only from files built with
// AVX-512 F / BW / VL / VNNI).
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace straw::cpu::avx512 {

// The broadcast dword of the dot products below, read from any address.
using i32_unaligned = int32_t __attribute__((aligned(1), may_alias));

// acc += u8(a) . s8(x[0..3]) in every 32-bit lane, the 4 bytes broadcast from memory by the
// instruction itself ({1to16}): GCC 12 does not fold _mm512_set1_epi32 into vpdpbusd, and the
// separate vpbroadcastd costs an extra operation per dot product.
inline __m512i dpbusd_bcast(__m512i acc, __m512i a, const int8_t* x) {
  asm("vpdpbusd %2%{1to16%}, %1, %0"
      : "+v"(acc)
      : "v"(a), "m"(*reinterpret_cast<const i32_unaligned*>(x)));
  return acc;
}

// acc += the int16 pairs of a times the broadcast pair x[0..1] in every 32-bit lane (vpdpwssd,
// broadcast as above).
inline __m512i dpwssd_bcast(__m512i acc, __m512i a, const int16_t* x) {
  asm("vpdpwssd %2%{1to16%}, %1, %0"
      : "+v"(acc)
      : "v"(a), "m"(*reinterpret_cast<const i32_unaligned*>(x)));
  return acc;
}

}  // namespace straw::cpu::avx512
