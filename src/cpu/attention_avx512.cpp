// The attention kernel (attention_impl.h) built with AVX-512, with its own steps on 512-bit
// registers: for many query tokens the scores (float keys: tiled512; Q8_0 / Q4_0 keys: 16-key
// tiles and EVEX vpdpbusd, scores_int512), the online softmax (softmax_row), quantized V rows
// converted and P.V (4 rows x 64 columns at a time); and the fused decode (fused_decode; P.V over
// a quantized V cache in 16-bit integers with vpdpwssd).
// GCC 12 intrinsics: see the note in matmul_avx2.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "cpu/attention_impl.h"
#include "cpu/vec_avx512.h"

namespace straw::cpu {

namespace {

using avx512::dpbusd_bcast;
using avx512::dpwssd_bcast;

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

// Scores S[r0 + i][jb + j] for NR rows and 16 NK keys from jb through the transposed block Kt
// (transpose_key_block): NR x NK accumulators, each Kt load shared by the rows, one broadcast of
// a query element per row and d.
template <int NR, int NK>
inline void tiled512(const Ctx& c, int r0, const float* Kt, int jb, float* S) {
  const float* qr[NR];
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) qr[i] = c.qrow(r0 + i);
  __m512 acc[NR][NK];
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i)
#pragma GCC unroll 2
    for (int n = 0; n < NK; ++n) acc[i][n] = _mm512_setzero_ps();
  for (int d = 0; d < c.D; ++d) {
    __m512 k[NK];
#pragma GCC unroll 2
    for (int n = 0; n < NK; ++n) k[n] = _mm512_loadu_ps(Kt + d * KB + jb + 16 * n);
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) {
      const __m512 q = _mm512_set1_ps(qr[i][d]);
#pragma GCC unroll 2
      for (int n = 0; n < NK; ++n) acc[i][n] = _mm512_fmadd_ps(q, k[n], acc[i][n]);
    }
  }
  const __m512 scale = _mm512_set1_ps(c.p->scale);
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i)
#pragma GCC unroll 2
    for (int n = 0; n < NK; ++n)
      _mm512_storeu_ps(S + size_t(r0 + i) * KB + jb + 16 * n, _mm512_mul_ps(acc[i][n], scale));
}

// ---- decode: one query token (see attention_impl.h) -------------------------------------------
//
// Scores: float keys 16 / rows keys per pass, one accumulator per (row, key), reduced 16 at once
// (hsum16), FMA over 16 elements per instruction. Q8_0 / Q4_0 keys: 16 keys in the lanes of a
// register, transposed from the cache rows in registers, vpdpbusd per row and 4 elements of the
// 16 keys (dec_scores_int), no reduction. P.V: 6 rows x 64 columns of accumulators.

// Lane i of the result: the sum of the 16 lanes of a[i].
__attribute__((always_inline)) inline __m512 hsum16(const __m512* a) {
  __m512 b[8], c[4];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i)  // 128-bit lanes: a(2i) twice (4 lanes each), a(2i + 1) twice
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)  // 128-bit lane k: 4 partial sums of a(4i + k)
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
  const __m512 d0 = _mm512_add_ps(_mm512_unpacklo_ps(c[0], c[1]), _mm512_unpackhi_ps(c[0], c[1]));
  const __m512 d1 = _mm512_add_ps(_mm512_unpacklo_ps(c[2], c[3]), _mm512_unpackhi_ps(c[2], c[3]));
  // Element m of 128-bit lane k: the sum of a(4m + k).
  const __m512 e = _mm512_add_ps(_mm512_shuffle_ps(d0, d1, 0x44), _mm512_shuffle_ps(d0, d1, 0xEE));
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(idx, e);
}

struct DecodeRows {
  const Ctx* c = nullptr;
  int rows = 0;
  int nb = 0;         // blocks of 32 in a K row of the head (quantized K)
  HeadRows k{}, v{};  // the head's K and V rows
  // Float K: the query rows times the attention scale, [row][D].
  alignas(64) float qf[kDecodeRows * kDecodeDim];
  // Quantized K: the query's block scales d_q times the attention scale, [row][block].
  alignas(64) float qd[kDecodeRows * kDecodeDim / 32];
  alignas(64) float dvf[kDecodeDim / 32 * KB];  // quantized V: the V scales, [block][key]
  alignas(64) int16_t wq[kDecodeRows * kWRow];  // quantized V: W in 16 bits, [row][block][key]
  alignas(64) float ws[kDecodeRows * kDecodeDim / 32];  // wq's scale per (row, block)
  // Q4_0 V: the sum of wq over the block's keys per (row, block), for the levels' offset of 8.
  alignas(64) int32_t wsum[kDecodeRows * kDecodeDim / 32];
};

// Scores of one block of keys [j0, j0 + kb) for R rows over a float (F16 / F32) K cache.
template <int R, bool kF16>
void dec_scores_float(const DecodeRows& d, int64_t j0, int kb, float* S) {
  constexpr int KP = 16 / R;  // keys per pass: KP * R accumulators
  const int D = d.c->D;
  for (int j = 0; j < kb; j += KP) {
    const uint8_t* kr[KP];
    pass_rows<KP>(d.k, d.v, j0, j, kb, kr);
    __m512 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
    for (int e = 0; e < D; e += 16) {
#pragma GCC unroll 16
      for (int i = 0; i < KP; ++i) {
        const __m512 kv = kF16 ? _mm512_cvtph_ps(_mm256_loadu_si256(
                                     reinterpret_cast<const __m256i*>(kr[i] + 2 * e)))
                               : _mm512_loadu_ps(reinterpret_cast<const float*>(kr[i]) + e);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
          acc[i * R + r] = _mm512_fmadd_ps(kv, _mm512_load_ps(d.qf + r * D + e), acc[i * R + r]);
      }
    }
    alignas(64) float s[16];
    _mm512_store_ps(s, hsum16(acc));
    const int n = std::min(KP, kb - j);
    for (int i = 0; i < n; ++i)
      for (int r = 0; r < R; ++r) S[size_t(r) * KB + j + i] = s[i * R + r];
  }
}

// t[m], m = 0..3: dword m of the 16 bytes at kr[i] + o for the 16 keys i, key i in lane i (keys
// 4l + g arrive in 128-bit lane l of register g, then a 4 x 4 transpose inside each 128-bit lane).
__attribute__((always_inline)) inline void transpose_keys(const uint8_t* const* kr, size_t o,
                                                          __m512i* t) {
  const auto row = [&](int i) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(kr[i] + o));
  };
  __m512i a[4];
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g)
    a[g] = _mm512_inserti32x4(
        _mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(row(g)), row(4 + g), 1),
                           row(8 + g), 2),
        row(12 + g), 3);
  const __m512i t0 = _mm512_unpacklo_epi32(a[0], a[1]), t1 = _mm512_unpackhi_epi32(a[0], a[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(a[2], a[3]), t3 = _mm512_unpackhi_epi32(a[2], a[3]);
  t[0] = _mm512_unpacklo_epi64(t0, t2);
  t[1] = _mm512_unpackhi_epi64(t0, t2);
  t[2] = _mm512_unpacklo_epi64(t1, t3);
  t[3] = _mm512_unpackhi_epi64(t1, t3);
}

// Scores of one block of keys for R rows over a Q8_0 / Q4_0 K cache, 16 keys in the lanes of one
// register (no reduction across lanes): per K block, 8 registers hold the levels of 16 keys, dword
// m of each lane the key's elements 4m..4m+3 (Q4_0: dwords 0..3 the low nibbles, elements 0..15,
// dwords 4..7 the high ones), each dotted with the query's broadcast dword m by one vpdpbusd per
// row; the bias starts the sum, the 16 keys' d_k times d_q scale it. (The int32 sum of a block
// is exact: 32 x 255 x 127 < 2^31.) Per key and row, 2 vpdpbusd for a head of 128 as before, but
// none of the reduction and about a third of the other instructions. The 16 keys' d_k come in one
// vpgatherdd per block: on the Intel Xeon the scalar loads and 2-byte stores before them, read
// back as a vector (a store-forwarding stall), had cost ~15 % of the q4_0 decode; on the AMD EPYC
// of an earlier session the gather had been no faster than those loads, and no slower.
template <bool kQ4>
__attribute__((always_inline)) inline void key_tile(const uint8_t* const* kr, int b, __m512i* lv) {
  constexpr int bb = kQ4 ? 18 : 34;  // bytes per block
  transpose_keys(kr, size_t(bb) * b + 2, lv);
  if constexpr (kQ4) {
    const __m512i nib = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int m = 0; m < 4; ++m) {
      lv[4 + m] = _mm512_and_si512(_mm512_srli_epi16(lv[m], 4), nib);
      lv[m] = _mm512_and_si512(lv[m], nib);
    }
  } else {
    transpose_keys(kr, size_t(bb) * b + 18, lv + 4);
#pragma GCC unroll 8
    for (int m = 0; m < 8; ++m) lv[m] = _mm512_xor_si512(lv[m], _mm512_set1_epi8(char(0x80)));
  }
}

// The 16 keys' scales of block b (rows at byte offsets `at` from base) as floats: one gather,
// the 2-byte scale as a dword's low half.
inline __m512 key_scales(const uint8_t* base, __m512i at, int b, int bb) {
  return _mm512_cvtph_ps(
      _mm512_cvtepi32_epi16(_mm512_i32gather_epi32(at, base + size_t(bb) * b, 1)));
}

// The byte offsets from key 0's row of keys j..j + 15, those past `last` clamped to it.
inline __m512i key_offsets(int j, int last, size_t stride) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  return _mm512_mullo_epi32(
      _mm512_min_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32(j)), _mm512_set1_epi32(last)),
      _mm512_set1_epi32(int(stride)));
}

// acc[r] += block b's part of the scores of R query rows against 16 keys (lv: key_tile; dk: their
// scales): bias + 8 vpdpbusd per row, times d_k d_q. q8 / bias / qd: row 0's levels ([R][D]),
// biases and scales ([R][nb]).
template <int R>
__attribute__((always_inline)) inline void rows_block(const int8_t* q8, const int32_t* bias,
                                                      const float* qd, int D, int nb, int b,
                                                      const __m512i* lv, __m512 dk, __m512* acc) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const int8_t* q = q8 + size_t(r) * D + 32 * b;
    __m512i ia = _mm512_set1_epi32(bias[size_t(r) * nb + b]);
#pragma GCC unroll 8
    for (int m = 0; m < 8; ++m) ia = dpbusd_bcast(ia, lv[m], q + 4 * m);
    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia),
                             _mm512_mul_ps(dk, _mm512_set1_ps(qd[size_t(r) * nb + b])), acc[r]);
  }
}

template <int R, bool kQ4>
void dec_scores_int(const DecodeRows& d, int64_t j0, int kb, float* S) {
  constexpr int bb = kQ4 ? 18 : 34;  // bytes per block
  const int nb = d.nb, D = d.c->D;
  for (int j = 0; j < kb; j += 16) {
    const uint8_t* kr[16];
    pass_rows<16>(d.k, d.v, j0, j, kb, kr);
    // Keys past kb repeat the block's last (pass_rows); their lanes are stored but not used.
    __m512 acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    const __m512i at = key_offsets(j, kb - 1, d.k.stride);
    for (int b = 0; b < nb; ++b) {
      __m512i lv[8];
      key_tile<kQ4>(kr, b, lv);
      rows_block<R>(d.c->q8, d.c->bias, d.qd, D, nb, b, lv, key_scales(d.k.row(j0), at, b, bb),
                    acc);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) _mm512_storeu_ps(S + size_t(r) * KB + j, acc[r]);
  }
}

// Scores S[r0 + r][16 g + j] of R rows against the repacked tiles (scores_int512).
template <int R>
void tile_rows512(const Ctx& c, int r0, int tiles, const __m512i* Kq, const float* Dk, float* S) {
  const int nb = c.D / 32;
  const __m512 scale = _mm512_set1_ps(c.p->scale);
  for (int g = 0; g < tiles; ++g) {
    __m512 acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      __m512i lv[8];
#pragma GCC unroll 8
      for (int m = 0; m < 8; ++m) lv[m] = _mm512_loadu_si512(Kq + (size_t(g) * nb + b) * 8 + m);
      rows_block<R>(c.q8 + size_t(r0) * c.D, c.bias + size_t(r0) * nb, c.dq + size_t(r0) * nb, c.D,
                    nb, b, lv, _mm512_loadu_ps(Dk + (size_t(g) * nb + b) * 16), acc);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
      _mm512_storeu_ps(S + size_t(r0 + r) * KB + 16 * g, _mm512_mul_ps(acc[r], scale));
  }
}

// Scores of every row over a Q8_0 / Q4_0 K cache for many query tokens (scores_int in
// attention_impl.h) on 512-bit registers: the key block transposed once into 16-key tiles
// (key_tile, into Kq: [tile][K block][8] registers; their scales into Dk: [tile][K block][16]),
// then 8 rows at a time as the fused decode scores (rows_block).
template <bool kQ4>
void scores_int512(const Ctx& c, int rows, int64_t j0, int kb, __m512i* Kq, float* Dk, float* S) {
  constexpr int bb = kQ4 ? 18 : 34;
  const int nb = c.D / 32, tiles = (kb + 15) / 16;
  const HeadRows k = head_rows(c.kv->k_type, c.kh, c.D, c.kv->n_ctx);
  for (int g = 0; g < tiles; ++g) {
    const uint8_t* kr[16];
    for (int i = 0; i < 16; ++i)  // keys past kb: the block's last (scored, not used)
      kr[i] = k.row(j0 + std::min(16 * g + i, kb - 1));
    const __m512i at = key_offsets(16 * g, kb - 1, k.stride);
    for (int b = 0; b < nb; ++b) {
      __m512i lv[8];
      key_tile<kQ4>(kr, b, lv);
      for (int m = 0; m < 8; ++m) _mm512_storeu_si512(Kq + (size_t(g) * nb + b) * 8 + m, lv[m]);
      _mm512_storeu_ps(Dk + (size_t(g) * nb + b) * 16, key_scales(k.row(j0), at, b, bb));
    }
  }
  for (int r0 = 0; r0 < rows; r0 += 8)
    with_rows<8>(std::min(8, rows - r0), [&](auto R) { tile_rows512<R>(c, r0, tiles, Kq, Dk, S); });
}

template <int R>
void dec_scores(const DecodeRows& d, int64_t j0, int kb, float* S) {
  switch (d.c->kv->k_type) {
    case ops::KvType::F32:
      return dec_scores_float<R, false>(d, j0, kb, S);
    case ops::KvType::F16:
      return dec_scores_float<R, true>(d, j0, kb, S);
    case ops::KvType::Q8_0:
      return dec_scores_int<R, false>(d, j0, kb, S);
    case ops::KvType::Q4_0:
      return dec_scores_int<R, true>(d, j0, kb, S);
  }
}

// O[r0 + r][d0, d0 + 16 ND) += sum_j P_r(j) V[j] over keys [j0, j0 + n) for NR rows of a float
// V cache.
template <int NR, int ND, ops::KvType VT>
void dec_pv(const DecodeRows& d, int r0, int64_t j0, int n, const float* S, float* O, int d0) {
  const int Dv = d.c->Dv;
  __m512 acc[NR][ND];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int k = 0; k < ND; ++k) acc[r][k] = _mm512_loadu_ps(O + size_t(r0 + r) * Dv + d0 + 16 * k);
  for (int j = 0; j < n; ++j) {
    const uint8_t* row = d.v.row(j0 + j);
    __m512 v[ND];
#pragma GCC unroll 4
    for (int k = 0; k < ND; ++k) {
      const int e = d0 + 16 * k;
      if constexpr (VT == ops::KvType::F32) {
        v[k] = _mm512_loadu_ps(reinterpret_cast<const float*>(row) + e);
      } else {
        v[k] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * e)));
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      const __m512 w = _mm512_set1_ps(S[size_t(r0 + r) * KB + j]);
#pragma GCC unroll 4
      for (int k = 0; k < ND; ++k) acc[r][k] = _mm512_fmadd_ps(w, v[k], acc[r][k]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int k = 0; k < ND; ++k) _mm512_storeu_ps(O + size_t(r0 + r) * Dv + d0 + 16 * k, acc[r][k]);
}

// ---- P.V over a quantized V cache in 16-bit integers
// W = P d_v of each (row, block) over the key block becomes int16 with one scale
// (largest magnitude / 32767: relative error <= 1.5e-5, far below the 8- or 4-bit levels' own),
// and each pair of V rows is interleaved column by column into (key j, key j + 1) 16-bit pairs,
// so that one vpdpwssd adds two keys' products for 16 columns (32 multiply-adds, against 16 per
// FMA, which bound the float P.V). The int32 sums stay exact over a key block (64 keys x 32767 x
// 128 < 2^31); they are scaled into O once per block.

// The online softmax of row r over one key block (online_softmax in attention_impl.h, on 512-bit
// registers): e = its probabilities for the block's 64 keys (0 past the visible ones), M / L
// advanced, O rescaled by e^(m_old - m_new). Returns the keys visible to the row.
inline int softmax_row(const Ctx& c, int r, int64_t j0, int kb, const float* S, float* O, float* M,
                       float* L, __m512* e) {
  const int vis = int(std::clamp<int64_t>(c.n_visible(r) - j0, 0, kb));
  if (vis == 0) {
    for (int k = 0; k < KB / 16; ++k) e[k] = _mm512_setzero_ps();
    return 0;
  }
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __mmask16 m[KB / 16];
  for (int k = 0; k < KB / 16; ++k) m[k] = avx512::first_lanes(vis - 16 * k);
  __m512 mx4 = neg_inf;
  for (int k = 0; k < KB / 16; ++k)
    mx4 = _mm512_max_ps(mx4, _mm512_mask_loadu_ps(neg_inf, m[k], S + size_t(r) * KB + 16 * k));
  const float mx = std::max(M[r], _mm512_reduce_max_ps(mx4));
  const float corr = std::exp(M[r] - mx);
  M[r] = mx;
  __m512 sum = _mm512_setzero_ps();
  for (int k = 0; k < KB / 16; ++k) {
    e[k] = _mm512_maskz_mov_ps(
        m[k], avx512::exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m[k], S + size_t(r) * KB + 16 * k),
                                        _mm512_set1_ps(mx))));
    sum = _mm512_add_ps(sum, e[k]);
  }
  L[r] = L[r] * corr + _mm512_reduce_add_ps(sum);
  if (corr != 1.0f) {
    float* o = O + size_t(r) * c.Dv;
    for (int x = 0; x < c.Dv; x += 16) {  // Dv: a multiple of 8
      const __mmask16 t = c.Dv - x >= 16 ? __mmask16(0xFFFF) : __mmask16(0x00FF);
      _mm512_mask_storeu_ps(o + x, t,
                            _mm512_mul_ps(_mm512_maskz_loadu_ps(t, o + x), _mm512_set1_ps(corr)));
    }
  }
  return vis;
}

// d.dvf[b][j] = the scale of block b of V row j0 + j (a quantized V cache) as a float, for keys
// [0, kb) (0 past kb): one gather per block and 16 keys, the rows' 2-byte scales read as the low
// halves of dwords (a block has 18 or 34 bytes, so the dword stays inside the row).
void gather_v_scales512(DecodeRows& d, int64_t j0, int kb) {
  const int nbv = d.c->Dv / 32;
  const int bb = d.c->kv->v_type == ops::KvType::Q8_0 ? 34 : 18;
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const uint8_t* base = d.v.row(j0);
  for (int k = 0; k < KB / 16; ++k) {
    const __mmask16 m = avx512::first_lanes(kb - 16 * k);
    const __m512i at = _mm512_mullo_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32(16 * k)),
                                          _mm512_set1_epi32(int(d.v.stride)));
    for (int b = 0; b < nbv; ++b) {
      const __m512i h =
          _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, at, base + size_t(bb) * b, 1);
      _mm512_store_ps(d.dvf + b * KB + 16 * k, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h)));
    }
  }
}

// The online softmax of one key block (online_softmax in attention_impl.h, on 512-bit registers),
// and for a quantized V cache W = P d_v in the same pass, from registers: per (row, V block) its
// largest magnitude sets the scale (ws) and W becomes 16-bit integers (wq, levels to 32767:
// relative error <= 1.5e-5; for Q4_0 V also their sums, wsum), four V blocks' maxima and sums
// reduced together. A float V cache gets P in S. Keys from the visible ones to the block's end
// get P = W = 0 (so key pairs are whole). Returns the largest number of keys visible to any row.
int dec_softmax(DecodeRows& d, int64_t j0, int kb, float* S, float* O, float* M, float* L) {
  const Ctx& c = *d.c;
  const ops::KvType vt = c.kv->v_type;
  const bool quant_v = ops::kv_quantized(vt), sums = vt == ops::KvType::Q4_0;
  const int nbv = c.Dv / 32;
  const float top = 32767.0f;
  if (quant_v) gather_v_scales512(d, j0, kb);
  int max_vis = 0;
  for (int r = 0; r < d.rows; ++r) {
    __m512 e[KB / 16];
    max_vis = std::max(max_vis, softmax_row(c, r, j0, kb, S, O, M, L, e));
    if (!quant_v) {
      for (int k = 0; k < KB / 16; ++k) _mm512_storeu_ps(S + size_t(r) * KB + 16 * k, e[k]);
      continue;
    }
    for (int b0 = 0; b0 < nbv; b0 += 4) {
      const int nb = std::min(4, nbv - b0);
      __m512 w[4][KB / 16], amax[4];
      for (int i = 0; i < 4; ++i) {
        amax[i] = _mm512_setzero_ps();
        if (i >= nb) continue;
        for (int k = 0; k < KB / 16; ++k) {
          w[i][k] = _mm512_mul_ps(e[k], _mm512_load_ps(d.dvf + (b0 + i) * KB + 16 * k));
          amax[i] = _mm512_max_ps(amax[i], _mm512_abs_ps(w[i][k]));
        }
      }
      const __m128 mx = avx512::hmax4(amax);
      const __m128 pos = _mm_cmpgt_ps(mx, _mm_setzero_ps());
      alignas(16) float ws[4], inv[4];
      _mm_store_ps(ws, _mm_div_ps(mx, _mm_set1_ps(top)));
      _mm_store_ps(inv, _mm_and_ps(pos, _mm_div_ps(_mm_set1_ps(top), mx)));
      __m512 total[4];
      for (int i = 0; i < 4; ++i) {
        total[i] = _mm512_setzero_ps();
        if (i >= nb) continue;
        d.ws[r * nbv + b0 + i] = ws[i];
        const size_t at = size_t(r) * kWRow + (b0 + i) * KB;
        __m512i sum = _mm512_setzero_si512();
        for (int k = 0; k < KB / 16; ++k) {
          const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(w[i][k], _mm512_set1_ps(inv[i])));
          if (sums) sum = _mm512_add_epi32(sum, q);
          _mm256_store_si256(reinterpret_cast<__m256i*>(d.wq + at + 16 * k),
                             _mm512_cvtepi32_epi16(q));
        }
        total[i] = _mm512_cvtepi32_ps(sum);  // |sum| <= 64 x 32767 < 2^24: exact
      }
      if (sums) {
        alignas(16) float t[4];
        _mm_store_ps(t, avx512::hsum4(total));
        for (int i = 0; i < nb; ++i) d.wsum[r * nbv + b0 + i] = int32_t(t[i]);
      }
    }
  }
  return max_vis;
}

// The (key j, key j + 1) int16 pairs of block blk of V rows a and b (keys j, j + 1) in v[0..1].
// Q8_0: the rows' 32 levels interleaved byte by byte (vpunpck*bw work inside 128-bit lanes) and
// sign-extended: v[0] holds columns 0..7 and 16..23, v[1] 8..15 and 24..31. Q4_0: the rows' 16
// bytes of nibbles interleaved and widened once: the low nibbles are columns 0..15 (v[0]), the
// high ones 16..31 (v[1]), in order, as levels 0..15 (the offset of 8 comes off per block, with
// d.wsum): 8 instructions per key pair and block, against 14 through levels of -8..7.
template <ops::KvType VT>
__attribute__((always_inline)) inline void v_pairs(const uint8_t* a, const uint8_t* b, int blk,
                                                   __m512i* v) {
  if constexpr (VT == ops::KvType::Q8_0) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 34 * blk + 2));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 34 * blk + 2));
    v[0] = _mm512_cvtepi8_epi16(_mm256_unpacklo_epi8(x, y));
    v[1] = _mm512_cvtepi8_epi16(_mm256_unpackhi_epi8(x, y));
  } else {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + 18 * blk + 2));
    const __m128i y = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18 * blk + 2));
    const __m512i xy =
        _mm512_cvtepu8_epi16(_mm256_set_m128i(_mm_unpackhi_epi8(x, y), _mm_unpacklo_epi8(x, y)));
    v[0] = _mm512_and_si512(xy, _mm512_set1_epi16(0x0F));
    v[1] = _mm512_srli_epi16(xy, 4);
  }
}

// O[r0 + r][32 blk0, 32 (blk0 + NB)) += sum_j W_r(j) V[j] over keys [j0, j0 + n) for NR rows of a
// Q8_0 / Q4_0 V cache (pairs from v_pairs; the epilogue puts Q8_0's columns back in order).
template <int NR, int NB, ops::KvType VT>
void dec_pv_q16(const DecodeRows& d, int r0, int64_t j0, int n, float* O, int blk0) {
  constexpr bool kQ4 = VT == ops::KvType::Q4_0;
  const int Dv = d.c->Dv;
  __m512i acc[NR][2 * NB];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int k = 0; k < 2 * NB; ++k) acc[r][k] = _mm512_setzero_si512();
  for (int j = 0; j < n; j += 2) {
    const uint8_t* a = d.v.row(j0 + j);
    const uint8_t* b = j + 1 < n ? d.v.row(j0 + j + 1) : a;  // odd tail: key n's W is 0
    __m512i v[2 * NB];
#pragma GCC unroll 2
    for (int k = 0; k < NB; ++k) v_pairs<VT>(a, b, blk0 + k, v + 2 * k);
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
#pragma GCC unroll 2
      for (int k = 0; k < NB; ++k) {
        const int16_t* w = d.wq + size_t(r0 + r) * kWRow + (blk0 + k) * KB + j;
        acc[r][2 * k] = dpwssd_bcast(acc[r][2 * k], v[2 * k], w);
        acc[r][2 * k + 1] = dpwssd_bcast(acc[r][2 * k + 1], v[2 * k + 1], w);
      }
    }
  }
  const int nbv = Dv / 32;
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
#pragma GCC unroll 2
    for (int k = 0; k < NB; ++k) {
      const int rb = (r0 + r) * nbv + blk0 + k;
      const __m512 s = _mm512_set1_ps(d.ws[rb]);
      const __m512i off = _mm512_set1_epi32(kQ4 ? 8 * d.wsum[rb] : 0);
      __m512 f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][2 * k], off)), s);
      __m512 f1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][2 * k + 1], off)), s);
      if constexpr (!kQ4) {
        const __m512 c0 = _mm512_shuffle_f32x4(f0, f1, 0x44),
                     c1 = _mm512_shuffle_f32x4(f0, f1, 0xEE);
        f0 = c0;
        f1 = c1;
      }
      float* o = O + size_t(r0 + r) * Dv + 32 * (blk0 + k);
      _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), f0));
      _mm512_storeu_ps(o + 16, _mm512_add_ps(_mm512_loadu_ps(o + 16), f1));
    }
  }
}

template <int NR, ops::KvType VT>
void dec_pv_rows(const DecodeRows& d, int r0, int64_t j0, int n, const float* S, float* O) {
  if constexpr (VT == ops::KvType::Q8_0 || VT == ops::KvType::Q4_0) {
    const int nbv = d.c->Dv / 32;
    int b = 0;
    for (; b + 2 <= nbv; b += 2) dec_pv_q16<NR, 2, VT>(d, r0, j0, n, O, b);
    if (b < nbv) dec_pv_q16<NR, 1, VT>(d, r0, j0, n, O, b);
  } else {
    int d0 = 0;
    for (; d0 + 64 <= d.c->Dv; d0 += 64) dec_pv<NR, 4, VT>(d, r0, j0, n, S, O, d0);
    if (d0 < d.c->Dv) dec_pv<NR, 2, VT>(d, r0, j0, n, S, O, d0);  // Dv is a multiple of 32
  }
}

template <ops::KvType VT>
void dec_pv_all(const DecodeRows& d, int64_t j0, int n, const float* S, float* O) {
  pv_row_groups(d.rows, [&](int r0, int nr) {
    with_rows<6>(nr, [&](auto NR) { dec_pv_rows<NR, VT>(d, r0, j0, n, S, O); });
  });
}

// The decode path of attention_kernel (see there): false, having done nothing, for shapes it does
// not serve.
bool fused_decode(const Ctx& c, int rows, int64_t k0, int64_t k_end, float* S, float* O, float* M,
                  float* L) {
  if (!decode_serves(c, rows)) return false;
  DecodeRows d;
  d.c = &c;
  d.rows = rows;
  const ops::KvLayer& kv = *c.kv;
  d.k = head_rows(kv.k_type, c.kh, c.D, kv.n_ctx);
  d.v = head_rows(kv.v_type, c.vh, c.Dv, kv.n_ctx);
  const float scale = c.p->scale;
  if (ops::kv_quantized(kv.k_type)) {
    // The quantized query rows are c.q8 / c.dq / c.bias (attention_kernel's); qd adds the
    // attention scale.
    d.nb = c.D / 32;
    for (int i = 0; i < rows * d.nb; ++i) d.qd[i] = c.dq[i] * scale;
  } else {
    scaled_query_rows(c, rows, d.qf);
  }
  for (int64_t j0 = k0; j0 < k_end; j0 += KB) {
    const int kb = int(std::min<int64_t>(KB, k_end - j0));
    with_rows<kDecodeRows>(rows, [&](auto R) { dec_scores<R>(d, j0, kb, S); });
    const int n = dec_softmax(d, j0, kb, S, O, M, L);
    with_kv_type(kv.v_type, [&](auto VT) { dec_pv_all<VT>(d, j0, n, S, O); });
  }
  return true;
}

// vpdpbusd does not saturate: Q8_0 keys as k + 128.
struct EvexVnni {
  static constexpr bool kUnsignedQ8 = true;
  // Row j of a Q8_0 / Q4_0 cache head as floats (see load_row in attention_impl.h), 16 elements
  // per instruction.
  static void load_quant_row(ops::KvType t, const uint8_t* head, int64_t j, int dim, float* dst) {
    const uint8_t* src = head + j * ops::kv_row_bytes(t, dim);
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
  // Scores over a float K cache for many query tokens (scores_tiled in attention_impl.h) on
  // 512-bit registers: 8 rows x 32 keys of accumulators against 4 x 16 on 256-bit ones.
  static void scores_tiled(const Ctx& c, int rows, int64_t j0, int kb, float* kbuf, float* Kt,
                           float* S) {
    transpose_key_block(c, j0, kb, kbuf, Kt);
    const int kb16 = (kb + 15) / 16 * 16;
    for (int r0 = 0; r0 < rows; r0 += 8)
      with_rows<8>(std::min(8, rows - r0), [&](auto NR) {
        for (int jb = 0; jb < kb16; jb += 32) {
          if (jb + 16 < kb16)
            tiled512<NR, 2>(c, r0, Kt, jb, S);
          else
            tiled512<NR, 1>(c, r0, Kt, jb, S);
        }
      });
  }
  // Scores over a Q8_0 / Q4_0 K cache for many query tokens: scores_int512.
  static void scores_int(const Ctx& c, int rows, int64_t j0, int kb, float* Kt, float* S) {
    auto* Kq = reinterpret_cast<__m512i*>(Kt);
    float* Dk = Kt + size_t(KB) * c.D / 4;  // after the tiles' KB x D bytes
    if (c.kv->k_type == ops::KvType::Q4_0)
      scores_int512<true>(c, rows, j0, kb, Kq, Dk, S);
    else
      scores_int512<false>(c, rows, j0, kb, Kq, Dk, S);
  }
  // The online softmax for many query rows (online_softmax in attention_impl.h) on 512-bit
  // registers.
  static int softmax(const Ctx& c, int rows, int64_t j0, int kb, float* S, float* O, float* M,
                     float* L) {
    int max_vis = 0;
    for (int r = 0; r < rows; ++r) {
      __m512 e[KB / 16];
      max_vis = std::max(max_vis, softmax_row(c, r, j0, kb, S, O, M, L, e));
      for (int k = 0; k < KB / 16; ++k) _mm512_storeu_ps(S + size_t(r) * KB + 16 * k, e[k]);
    }
    return max_vis;
  }
  // One query token: the fused decode above.
  static bool decode(const Ctx& c, int rows, int64_t k0, int64_t k_end, float* S, float* O,
                     float* M, float* L, float*, float*) {
    return fused_decode(c, rows, k0, k_end, S, O, M, L);
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
