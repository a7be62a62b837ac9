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
// accumulators), V converted to floats: w = P for float V, W (P d_v of the columns' block; WInt)
// for quantized V.
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

// ---- P.V over a quantized V cache in 16-bit integers (AVX-VNNI, as the AVX-512 decode does)
// W = P d_v of each (row, V block) over the key block is rounded to int16 with one scale (its
// largest magnitude / 32767: relative error <= 1.5e-5), each pair of V rows is interleaved column
// by column into (key j, key j + 1) int16 pairs, and one VEX vpdpwssd (Dot::dot2w) adds both
// keys' products for 8 columns: half the multiply instructions of the float FMAs, and no
// conversion of V to floats. The int32 sums are exact over a key block (64 keys x 32767 x 128 <
// 2^31) and scaled into O once per block. Plain AVX2 (vpmaddwd + vpaddd: as many instructions as
// the FMAs) was 3-5 % slower than the float P.V on the Intel Xeon, so it keeps W as floats.
struct WInt {
  alignas(32) int16_t wq[kDecodeRows * kWRow];              // W, [row][V block][key]
  alignas(32) float wf[kDecodeRows * kWRow];                // AVX2: W as floats, the same order
  alignas(32) float ws[kDecodeRows * kDecodeDim / 32];      // wq's scale per (row, V block)
  alignas(32) int32_t wsum[kDecodeRows * kDecodeDim / 32];  // Q4_0: sum of wq per (row, block)
  alignas(32) float dvf[kDecodeDim / 32 * KB];              // the V scales, [V block][key]
};

// The fp16 values at byte offsets idx from base, in the lanes where mask is set (0 elsewhere), as
// floats: 8 dwords gathered and their low halves taken (a quantized block has 18 or 34 bytes, so
// the dword stays inside the row). One gather against 8 scalar loads and 2-byte stores read back
// as a vector, which stall store forwarding.
inline __m256 gather_halves(const uint8_t* base, __m256i idx, __m256i mask) {
  const __m256i g = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(),
                                                reinterpret_cast<const int*>(base), idx, mask, 1);
  const __m256i pick = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0,
                                        1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i lo = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(g, pick), 0x08);
  return _mm256_cvtph_ps(_mm256_castsi256_si128(lo));
}

// w from W = P d_v (S: the block's probabilities, [row][KB]) for keys [0, n) of every row and V
// block, rounded to wq (kInt) or as floats in wf; the keys from n to the next multiple of 8 get
// W = 0 (so that key pairs are whole).
template <bool kInt>
void fold_w(const HeadRows& v, ops::KvType vt, int Dv, int rows, int64_t j0, int n, const float* S,
            WInt& w) {
  const int nbv = Dv / 32, nc = (n + 7) / 8;
  const int bb = vt == ops::KvType::Q8_0 ? 34 : 18;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256 keep[KB / 8];  // all ones for keys < n
  for (int c = 0; c < nc; ++c) {
    const __m256i key = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * c));
    const __m256i in = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), key);
    keep[c] = _mm256_castsi256_ps(in);
    const __m256i idx = _mm256_mullo_epi32(key, _mm256_set1_epi32(int(v.stride)));
    for (int b = 0; b < nbv; ++b)
      _mm256_store_ps(w.dvf + b * KB + 8 * c, gather_halves(v.row(j0) + size_t(bb) * b, idx, in));
  }
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int r = 0; r < rows; ++r)
    for (int b = 0; b < nbv; ++b) {
      __m256 x[KB / 8];
      __m256 amax = _mm256_setzero_ps();
      for (int c = 0; c < nc; ++c) {
        // Masked: S past n may hold scores of keys past the block (finite or not).
        x[c] = _mm256_and_ps(keep[c], _mm256_mul_ps(_mm256_loadu_ps(S + size_t(r) * KB + 8 * c),
                                                    _mm256_load_ps(w.dvf + b * KB + 8 * c)));
        if constexpr (kInt) amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, x[c]));
      }
      if constexpr (!kInt) {
        for (int c = 0; c < nc; ++c)
          _mm256_store_ps(w.wf + size_t(r) * kWRow + b * KB + 8 * c, x[c]);
        continue;
      }
      const float mx = avx2::hmax(amax);
      w.ws[r * nbv + b] = mx / 32767.0f;
      const __m256 inv = _mm256_set1_ps(mx > 0.0f ? 32767.0f / mx : 0.0f);
      int16_t* q = w.wq + size_t(r) * kWRow + b * KB;
      __m256i sum = _mm256_setzero_si256();
      for (int c = 0; c < nc; c += 2) {
        const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(x[c], inv));  // |q| <= 32767
        const __m256i q1 =
            c + 1 < nc ? _mm256_cvtps_epi32(_mm256_mul_ps(x[c + 1], inv)) : _mm256_setzero_si256();
        sum = _mm256_add_epi32(sum, _mm256_add_epi32(q0, q1));
        // packs works inside 128-bit lanes: the permute puts keys 8c..8c+15 back in order.
        _mm256_store_si256(reinterpret_cast<__m256i*>(q + 8 * c),
                           _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8));
      }
      w.wsum[r * nbv + b] = avx2::hsum_epi32(sum);
    }
}

// O[r0 + r][d0, d0 + 16) += sum_j W_r(j) V[j] over keys [j0, j0 + n) for NR rows of a Q8_0 /
// Q4_0 V cache (16 columns of V block d0 / 32; Q4_0: levels 0..15, the offset of 8 taken off with
// wsum).
template <int NR, ops::KvType VT, class Dot>
void dec8_pv_int(const HeadRows& v, int Dv, int r0, int64_t j0, int n, const WInt& w, float* O,
                 int d0) {
  constexpr bool kQ4 = VT == ops::KvType::Q4_0;
  const int blk = d0 / 32, hi = d0 % 32;
  __m256i acc[NR][2];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  const int16_t* w0 = w.wq + size_t(r0) * kWRow + blk * KB;
  const size_t o = kQ4 ? 18 * size_t(blk) + 2 : 34 * size_t(blk) + 2 + hi;
  for (int j = 0; j < n; j += 2) {
    const uint8_t* a = v.row(j0 + j);
    const uint8_t* b = j + 1 < n ? v.row(j0 + j + 1) : a;  // odd tail: key n's W is 0
    const __m128i xa = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + o));
    const __m128i xb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + o));
    __m256i x0, x1;  // (key j, key j + 1) pairs of columns d0..d0 + 7 and d0 + 8..d0 + 15
    if constexpr (kQ4) {
      // Elements 0..15 of a block are the low nibbles, 16..31 the high ones.
      x0 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(xa, xb));
      x1 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(xa, xb));
      if (hi) {
        x0 = _mm256_srli_epi16(x0, 4);
        x1 = _mm256_srli_epi16(x1, 4);
      } else {
        x0 = _mm256_and_si256(x0, _mm256_set1_epi16(0x0F));
        x1 = _mm256_and_si256(x1, _mm256_set1_epi16(0x0F));
      }
    } else {
      x0 = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(xa, xb));
      x1 = _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(xa, xb));
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      int32_t pair;
      std::memcpy(&pair, w0 + size_t(r) * kWRow + j, 4);
      const __m256i wv = _mm256_set1_epi32(pair);
      acc[r][0] = Dot::dot2w(acc[r][0], x0, wv);
      acc[r][1] = Dot::dot2w(acc[r][1], x1, wv);
    }
  }
  const int nbv = Dv / 32;
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
    const int rb = (r0 + r) * nbv + blk;
    const __m256 s = _mm256_set1_ps(w.ws[rb]);
    const __m256i off = _mm256_set1_epi32(kQ4 ? 8 * w.wsum[rb] : 0);
    float* out = O + size_t(r0 + r) * Dv + d0;
#pragma GCC unroll 2
    for (int k = 0; k < 2; ++k) {
      const __m256 f = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r][k], off));
      _mm256_storeu_ps(out + 8 * k, _mm256_fmadd_ps(f, s, _mm256_loadu_ps(out + 8 * k)));
    }
  }
}

template <class Dot, ops::KvType VT>
void dec8_pv_all(const HeadRows& v, int Dv, int rows, int64_t j0, int n, const float* S,
                 const WInt& w, float* O) {
  pv_row_groups(rows, [&](int r0, int nr) {
    with_rows<6>(nr, [&](auto NR) {
      for (int d0 = 0; d0 < Dv; d0 += 16) {
        if constexpr (Dot::kIntPv && (VT == ops::KvType::Q8_0 || VT == ops::KvType::Q4_0))
          dec8_pv_int<NR, VT, Dot>(v, Dv, r0, j0, n, w, O, d0);
        else
          dec8_pv<NR, VT>(v, Dv, r0, j0, n, S, w.wf, O, d0);
      }
    });
  });
}

// The fused decode on 256-bit registers (AVX2, AVX-VNNI): false, having done nothing, for shapes
// it does not serve. Quantized keys are scored as in the general path (the 8-key integer tiles,
// built in Kt).
template <class Dot>
bool fused_decode256(const Ctx& c, int rows, int64_t k0, int64_t k_end, float* S, float* O,
                     float* M, float* L, float* Kt) {
  if (!decode_serves(c, rows)) return false;
  const ops::KvLayer& kv = *c.kv;
  const HeadRows k = head_rows(kv.k_type, c.kh, c.D, kv.n_ctx);
  const HeadRows v = head_rows(kv.v_type, c.vh, c.Dv, kv.n_ctx);
  const bool int_keys = ops::kv_quantized(kv.k_type);
  alignas(32) float qf[kDecodeRows * kDecodeDim];
  WInt w;
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
    if (ops::kv_quantized(kv.v_type)) fold_w<Dot::kIntPv>(v, kv.v_type, c.Dv, rows, j0, n, S, w);
    with_kv_type(kv.v_type, [&](auto VT) { dec8_pv_all<Dot, VT>(v, c.Dv, rows, j0, n, S, w, O); });
  }
  return true;
}

// vpmaddubsw (to 16-bit pairs) + vpmaddwd (to 32-bit). vpmaddubsw saturates above 32767, so Q8_0
// keys stay signed and use |k| and sign(x, k): |k| <= 128 and |x| <= 127 keep a pair below it.
struct Maddubs {
  static constexpr bool kUnsignedQ8 = false;
  static constexpr bool kIntPv = false;  // P.V over quantized V: float W (see WInt)
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
                     float* M, float* L, float* Kt, float*) {
    return fused_decode256<Maddubs>(c, rows, k0, k_end, S, O, M, L, Kt);
  }
};

// VEX vpdpbusd, which does not saturate: Q8_0 keys as k + 128. Inline assembly, as in
// matmul_avx2.cpp: the intrinsic would need -mavxvnni on the shared kernel template, letting the
// compiler use AVX-VNNI in the AVX2 build too.
struct VexVnni {
  static constexpr bool kUnsignedQ8 = true;
  static constexpr bool kIntPv = true;  // P.V over quantized V: vpdpwssd (see WInt)
  template <bool kSigned>
  static __m256i dot4(__m256i acc, __m256i k, __m256i x) {
    static_assert(!kSigned, "vpdpbusd multiplies unsigned levels");
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(k), "x"(x));
    return acc;
  }
  // acc += the int16 pairs of v times those of w in every 32-bit lane.
  static __m256i dot2w(__m256i acc, __m256i v, __m256i w) {
    __asm__("%{vex%} vpdpwssd %2, %1, %0" : "+x"(acc) : "x"(v), "x"(w));
    return acc;
  }
  static bool decode(const Ctx& c, int rows, int64_t k0, int64_t k_end, float* S, float* O,
                     float* M, float* L, float* Kt, float*) {
    return fused_decode256<VexVnni>(c, rows, k0, k_end, S, O, M, L, Kt);
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
