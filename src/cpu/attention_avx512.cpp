// The attention kernel (attention_impl.h) built with AVX-512: integer scores with EVEX vpdpbusd on
// 256-bit registers (AVX512-VNNI + VL; the 8-key tiles and 32-element blocks fit them exactly),
// quantized V rows converted and P.V computed on 512-bit registers (4 rows x 64 columns at a time).
// GCC 12 intrinsics: see the note in matmul_avx2.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "cpu/attention_impl.h"

namespace straw::cpu {

namespace {

// O[r0 + i] += sum_j P[r0 + i][j] V[j] for NR rows over ND x 16 columns from d0 (the last 16
// masked by `tail`): 4 rows x 64 columns are 16 accumulators of the 32 registers, each V load
// shared by 4 rows.
template <int NR, int ND>
inline void pv_tile512(const float* S, int r0, const float* V, float* O, int Dv, int n_keys, int d0,
                       __mmask16 tail) {
  constexpr int KB = kAttnKeyBlock;
  __m512 acc[NR][ND];
#pragma GCC unroll 4
  for (int i = 0; i < NR; ++i)
#pragma GCC unroll 4
    for (int k = 0; k < ND; ++k)
      acc[i][k] = _mm512_maskz_loadu_ps(k == ND - 1 ? tail : __mmask16(0xFFFF),
                                        O + size_t(r0 + i) * Dv + d0 + 16 * k);
  for (int j = 0; j < n_keys; ++j) {
    __m512 v[ND];
#pragma GCC unroll 4
    for (int k = 0; k < ND; ++k)
      v[k] = _mm512_maskz_loadu_ps(k == ND - 1 ? tail : __mmask16(0xFFFF),
                                   V + size_t(j) * Dv + d0 + 16 * k);
#pragma GCC unroll 4
    for (int i = 0; i < NR; ++i) {
      const __m512 w = _mm512_set1_ps(S[size_t(r0 + i) * KB + j]);
#pragma GCC unroll 4
      for (int k = 0; k < ND; ++k) acc[i][k] = _mm512_fmadd_ps(w, v[k], acc[i][k]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < NR; ++i)
#pragma GCC unroll 4
    for (int k = 0; k < ND; ++k)
      _mm512_mask_storeu_ps(O + size_t(r0 + i) * Dv + d0 + 16 * k,
                            k == ND - 1 ? tail : __mmask16(0xFFFF), acc[i][k]);
}

template <int NR>
inline void pv_rows512(const float* S, int r0, const float* V, float* O, int Dv, int n_keys) {
  int d0 = 0;
  for (; d0 + 64 <= Dv; d0 += 64) pv_tile512<NR, 4>(S, r0, V, O, Dv, n_keys, d0, 0xFFFF);
  for (; d0 < Dv; d0 += 16)  // Dv is a multiple of 8: the last tile may be half
    pv_tile512<NR, 1>(S, r0, V, O, Dv, n_keys, d0, Dv - d0 >= 16 ? 0xFFFF : 0x00FF);
}

// vpdpbusd does not saturate: Q8_0 keys as k + 128.
struct EvexVnni {
  static constexpr bool kUnsignedQ8 = true;
  template <bool kSigned>
  static __m256i dot4(__m256i acc, __m256i k, __m256i x) {
    static_assert(!kSigned, "vpdpbusd multiplies unsigned levels");
    return _mm256_dpbusd_epi32(acc, k, x);
  }
  // Row j of a Q8_0 / Q4_0 cache head as floats (see load_row in attention_impl.h), 16 elements
  // per instruction.
  static void load_quant_row(ops::KvType t, const void* base, int64_t width, int64_t offset,
                             int64_t j, int dim, float* dst) {
    const uint8_t* src = static_cast<const uint8_t*>(base) + j * ops::kv_row_bytes(t, width) +
                         ops::kv_row_bytes(t, offset);
    const bool q8 = t == ops::KvType::Q8_0;
    for (int b = 0; b < dim / 32; ++b, src += q8 ? 34 : 18, dst += 32) {
      uint16_t h;
      std::memcpy(&h, src, 2);
      const __m512 scale = _mm512_set1_ps(half_to_float(h));
      __m128i lo, hi;  // elements 0..15 and 16..31 as int8
      if (q8) {
        lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2));
        hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 18));
      } else {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2));
        const __m128i mask = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
        lo = _mm_sub_epi8(_mm_and_si128(bytes, mask), eight);
        hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask), eight);
      }
      _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)), scale));
      _mm512_storeu_ps(dst + 16,
                       _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)), scale));
    }
  }
  // O[r] += sum_j P[r][j] V[j] for every row (P: rows x kAttnKeyBlock, V: n_keys x Dv).
  static void pv(const float* S, const float* V, float* O, int rows, int Dv, int n_keys) {
    int r0 = 0;
    for (; r0 + 4 <= rows; r0 += 4) pv_rows512<4>(S, r0, V, O, Dv, n_keys);
    switch (rows - r0) {
      case 3:
        pv_rows512<3>(S, r0, V, O, Dv, n_keys);
        break;
      case 2:
        pv_rows512<2>(S, r0, V, O, Dv, n_keys);
        break;
      case 1:
        pv_rows512<1>(S, r0, V, O, Dv, n_keys);
        break;
      default:
        break;
    }
  }
};

}  // namespace

void attention_avx512(const float* q, const ops::KvLayer& kv, float* out,
                      const ops::AttentionParams& p, int kv_head, int t0, int t1, int64_t k0,
                      int64_t k1, float* partial, float* scratch) {
  attention_kernel<EvexVnni>(q, kv, out, p, kv_head, t0, t1, k0, k1, partial, scratch);
}

}  // namespace straw::cpu
