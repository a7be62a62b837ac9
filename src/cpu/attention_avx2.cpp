// The attention kernel (attention_impl.h) on AVX2 + FMA + F16C with vpmaddubsw integer scores, and
// for AVX-VNNI with VEX vpdpbusd (only called when cpu_features().avx_vnni); both with the fused
// decode on 256-bit registers (fused_decode256).
// GCC 12 intrinsics: see the note in matmul_avx2.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "cpu/attention_impl.h"

namespace straw::cpu {

namespace {

// Lane i of the result: the sum of the 8 lanes of a[i].
__attribute__((always_inline)) inline __m256 hsum8(const __m256* a) {
  const __m256 h01 = _mm256_hadd_ps(a[0], a[1]), h23 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 h45 = _mm256_hadd_ps(a[4], a[5]), h67 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 h0 = _mm256_hadd_ps(h01, h23), h1 = _mm256_hadd_ps(h45, h67);
  return _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20), _mm256_permute2f128_ps(h0, h1, 0x31));
}

// Scores of keys [j0, j0 + kb) for R rows over a float K cache; qf: the query rows times the
// attention scale, [R][D], 32-byte aligned.
template <int R, bool kF16>
void dec8_scores(const HeadRows& k, const HeadRows& v, int D, const float* qf, int64_t j0, int kb,
                 float* S) {
  constexpr int KP = R >= 8 ? 1 : 8 / R;  // keys per pass: KP * R <= 8 accumulators
  for (int j = 0; j < kb; j += KP) {
    const uint8_t* kr[KP];
    pass_rows<KP>(k, v, j0, j, kb, kr);
    __m256 acc[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_ps();
    for (int e = 0; e < D; e += 8) {
#pragma GCC unroll 8
      for (int i = 0; i < KP; ++i) {
        const __m256 kv =
            kF16 ? _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kr[i] + 2 * e)))
                 : _mm256_loadu_ps(reinterpret_cast<const float*>(kr[i]) + e);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
          acc[i * R + r] = _mm256_fmadd_ps(kv, _mm256_load_ps(qf + r * D + e), acc[i * R + r]);
      }
    }
    alignas(32) float s[8];
    _mm256_store_ps(s, hsum8(acc));
    const int n = std::min(KP, kb - j);
    for (int i = 0; i < n; ++i)
      for (int r = 0; r < R; ++r) S[size_t(r) * KB + j + i] = s[i * R + r];
  }
}

// O[r0 + r][d0, d0 + 16) += sum_j w_r(j) V[j] over keys [j0, j0 + n) for NR rows (NR x 2
// accumulators): w = P for float V, W (P d_v of the columns' block) for quantized V.
template <int NR, ops::KvType VT>
void dec8_pv(const HeadRows& v, int Dv, int r0, int64_t j0, int n, const float* S, const float* W,
             float* O, int d0) {
  constexpr bool kQuant = VT == ops::KvType::Q8_0 || VT == ops::KvType::Q4_0;
  __m256 acc[NR][2];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 2
    for (int k = 0; k < 2; ++k) acc[r][k] = _mm256_loadu_ps(O + size_t(r0 + r) * Dv + d0 + 8 * k);
  const float* w0 = kQuant ? W + size_t(r0) * kWRow + d0 / 32 * KB : S + size_t(r0) * KB;
  constexpr size_t w_stride = kQuant ? kWRow : KB;
  for (int j = 0; j < n; ++j) {
    const uint8_t* row = v.row(j0 + j);
    __m256 x[2];
    if constexpr (VT == ops::KvType::F32) {
      x[0] = _mm256_loadu_ps(reinterpret_cast<const float*>(row) + d0);
      x[1] = _mm256_loadu_ps(reinterpret_cast<const float*>(row) + d0 + 8);
    } else if constexpr (VT == ops::KvType::F16) {
      x[0] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * d0)));
      x[1] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * d0 + 16)));
    } else if constexpr (VT == ops::KvType::Q8_0) {
      const __m128i q =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 34 * (d0 / 32) + 2 + d0 % 32));
      x[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
      x[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
    } else {
      // Q4_0: elements 0..15 of a block are the low nibbles, 16..31 the high ones.
      const __m128i raw =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 18 * (d0 / 32) + 2));
      const __m128i nibs = d0 % 32 ? _mm_srli_epi16(raw, 4) : raw;
      const __m128i q = _mm_sub_epi8(_mm_and_si128(nibs, _mm_set1_epi8(0x0F)), _mm_set1_epi8(8));
      x[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
      x[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      const __m256 w = _mm256_broadcast_ss(w0 + r * w_stride + j);
      acc[r][0] = _mm256_fmadd_ps(w, x[0], acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(w, x[1], acc[r][1]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 2
    for (int k = 0; k < 2; ++k) _mm256_storeu_ps(O + size_t(r0 + r) * Dv + d0 + 8 * k, acc[r][k]);
}

template <ops::KvType VT>
void dec8_pv_all(const HeadRows& v, int Dv, int rows, int64_t j0, int n, const float* S,
                 const float* W, float* O) {
  pv_row_groups(rows, [&](int r0, int nr) {
    with_rows<6>(nr, [&](auto NR) {
      for (int d0 = 0; d0 < Dv; d0 += 16) dec8_pv<NR, VT>(v, Dv, r0, j0, n, S, W, O, d0);
    });
  });
}

// The fused decode on 256-bit registers (AVX2, AVX-VNNI): false, having done nothing, for shapes
// it does not serve. Quantized keys are scored as in the general path (the 8-key integer tiles,
// built in Kt); W (rows x Dv / 32 x KB floats) goes to Vbuf.
template <class Dot>
bool fused_decode256(const Ctx& c, int rows, int64_t k0, int64_t k_end, float* S, float* O,
                     float* M, float* L, float* Kt, float* Vbuf) {
  if (!decode_serves(c, rows)) return false;
  const ops::KvLayer& kv = *c.kv;
  const HeadRows k = head_rows(kv.k_type, c.kh, c.D, kv.n_ctx);
  const HeadRows v = head_rows(kv.v_type, c.vh, c.Dv, kv.n_ctx);
  const bool int_keys = ops::kv_quantized(kv.k_type);
  alignas(32) float qf[kDecodeRows * kDecodeDim];
  alignas(32) uint16_t dv[kDecodeDim / 32 * KB];
  if (!int_keys) scaled_query_rows(c, rows, qf);
  auto* Kq = reinterpret_cast<__m256i*>(Kt);
  float* Dk = Kt + size_t(KB) * c.D / 4;
  const bool f16 = kv.k_type == ops::KvType::F16;
  for (int64_t j0 = k0; j0 < k_end; j0 += KB) {
    const int kb = int(std::min<int64_t>(KB, k_end - j0));
    if (int_keys) {
      for (int j = 0; j < kb; ++j) v.prefetch(j0 + j);
      scores_int<Dot>(c, rows, j0, kb, Kq, Dk, S);
    } else {
      with_rows<kDecodeRows>(rows, [&](auto R) {
        if (f16)
          dec8_scores<R, true>(k, v, c.D, qf, j0, kb, S);
        else
          dec8_scores<R, false>(k, v, c.D, qf, j0, kb, S);
      });
    }
    const int n = online_softmax(c, rows, j0, kb, S, O, M, L);
    if (ops::kv_quantized(kv.v_type))
      fold_v_scales(kv.v_type, v, c.Dv / 32, rows, j0, n, S, Vbuf, dv);
    with_kv_type(kv.v_type, [&](auto VT) { dec8_pv_all<VT>(v, c.Dv, rows, j0, n, S, Vbuf, O); });
  }
  return true;
}

// vpmaddubsw (to 16-bit pairs) + vpmaddwd (to 32-bit). vpmaddubsw saturates above 32767, so Q8_0
// keys stay signed and use |k| and sign(x, k): |k| <= 128 and |x| <= 127 keep a pair below it.
struct Maddubs {
  static constexpr bool kUnsignedQ8 = false;
  template <bool kSigned>
  static __m256i dot4(__m256i acc, __m256i k, __m256i x) {
    __m256i p;
    if constexpr (kSigned)
      p = _mm256_maddubs_epi16(_mm256_sign_epi8(k, k), _mm256_sign_epi8(x, k));
    else
      p = _mm256_maddubs_epi16(k, x);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
  }
  static bool decode(const Ctx& c, int rows, int64_t k0, int64_t k_end, float* S, float* O,
                     float* M, float* L, float* Kt, float* V) {
    return fused_decode256<Maddubs>(c, rows, k0, k_end, S, O, M, L, Kt, V);
  }
};

// VEX vpdpbusd, which does not saturate: Q8_0 keys as k + 128. Inline assembly, as in
// matmul_avx2.cpp: the intrinsic would need -mavxvnni on the shared kernel template, letting the
// compiler use AVX-VNNI in the AVX2 build too.
struct VexVnni {
  static constexpr bool kUnsignedQ8 = true;
  template <bool kSigned>
  static __m256i dot4(__m256i acc, __m256i k, __m256i x) {
    static_assert(!kSigned, "vpdpbusd multiplies unsigned levels");
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(k), "x"(x));
    return acc;
  }
  static bool decode(const Ctx& c, int rows, int64_t k0, int64_t k_end, float* S, float* O,
                     float* M, float* L, float* Kt, float* V) {
    return fused_decode256<VexVnni>(c, rows, k0, k_end, S, O, M, L, Kt, V);
  }
};

}  // namespace

void attention_avx2(const float* q, const ops::KvLayer& kv, float* out,
                    const ops::AttentionParams& p, int kv_head, int t0, int t1, int64_t k0,
                    int64_t k1, float* partial, float* scratch) {
  attention_kernel<Maddubs>(q, kv, out, p, kv_head, t0, t1, k0, k1, partial, scratch);
}

void attention_avx_vnni(const float* q, const ops::KvLayer& kv, float* out,
                        const ops::AttentionParams& p, int kv_head, int t0, int t1, int64_t k0,
                        int64_t k1, float* partial, float* scratch) {
  attention_kernel<VexVnni>(q, kv, out, p, kv_head, t0, t1, k0, k1, partial, scratch);
}

}  // namespace straw::cpu
