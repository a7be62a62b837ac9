// Inline AVX-512 helpers shared by the *_avx512.cpp files (include only from files built with
// AVX-512 F / BW / VL / VNNI).
#pragma once

#include <immintrin.h>

#include <algorithm>
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

// The first n lanes of 16 (none for n <= 0, all for n >= 16).
inline __mmask16 first_lanes(int n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << std::max(n, 0)) - 1);
}

// e^x on 16 lanes, the same steps as avx2::exp (vec_avx2.h) so that both levels agree lane for
// lane: about 1 ulp for x in [-87, 88], clamped outside.
inline __m512 exp(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e =
      _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

// Lane i: the largest of a[i]'s 16 lanes (kMax) or their sum, i = 0..3, with the folds shared
// between the four.
template <bool kMax>
inline __m128 fold4(const __m512* a) {
  const auto op = [](__m256 x, __m256 y) {
    return kMax ? _mm256_max_ps(x, y) : _mm256_add_ps(x, y);
  };
  __m256 h[4];
  for (int i = 0; i < 4; ++i)
    h[i] = op(_mm512_castps512_ps256(a[i]), _mm512_extractf32x8_ps(a[i], 1));
  const __m256 x01 = op(_mm256_unpacklo_ps(h[0], h[1]), _mm256_unpackhi_ps(h[0], h[1]));
  const __m256 x23 = op(_mm256_unpacklo_ps(h[2], h[3]), _mm256_unpackhi_ps(h[2], h[3]));
  // Lanes 0..3 of each 128-bit half: partial results of a0..a3.
  const __m256 y = op(_mm256_shuffle_ps(x01, x23, 0x44), _mm256_shuffle_ps(x01, x23, 0xEE));
  const __m256 z = op(y, _mm256_permute2f128_ps(y, y, 0x01));
  return _mm256_castps256_ps128(z);
}
inline __m128 hmax4(const __m512* a) {
  return fold4<true>(a);
}
inline __m128 hsum4(const __m512* a) {
  return fold4<false>(a);
}

}  // namespace straw::cpu::avx512
