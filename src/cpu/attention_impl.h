// The attention kernel (VecKernels::attention), written once on 256-bit registers and compiled
// per instruction-set level with its integer dot-product policy: attention_avx2.cpp (vpmaddubsw,
// and VEX vpdpbusd for AVX-VNNI), attention_avx512.cpp (EVEX vpdpbusd). Everything here has
// internal linkage, so each build keeps its own code. Include only from those files.
//
// For one KV head and a range of query tokens, every query head of the group is processed
// together, so each K/V row is read (and converted) once per group, not once per query head. Keys
// go in blocks of kAttnKeyBlock with an online softmax (running max m, running sum l, output
// rescaled by e^(m_old - m_new)), so nothing is sized by the context.
//
// Scores over an F32 / F16 K cache: for one query token (decode) each key row is converted once
// and dotted with the group's query rows; for many query tokens the block is transposed to
// Kt[dim][key] so that a 4-row x 16-key tile of scores accumulates with broadcast FMAs and no
// horizontal sums.
//
// Scores over a Q8_0 / Q4_0 K cache are integer (scores_int): the query rows are quantized once per
// call (quantize_query: 8-bit levels, a scale per 32), and each block of keys is repacked once for
// all rows into 8-key tiles where register c of block b holds bytes 4c..4c+3 of the 8 keys (an
// 8 x 8 transpose of 32-bit groups), so that one dot-product instruction against 4 broadcast query
// bytes adds 4 products to each key's lane: 8 keys' sums in 8 lanes, no horizontal sums. A block
// of 32 gives I = sum_i k_i q_i, and the score sum_b d_k d_q I (times the attention scale) as the
// reference computes it. Levels for the unsigned operand: Q4_0 keys as their nibbles (0..15, offset
// 8); Q8_0 keys as k + 128 (offset 128) with vpdpbusd, or signed with the sign trick of vpmaddubsw
// (|k| and sign(q, k): the pair sums stay below its 16-bit saturation). The offset times the sum of
// the query's levels starts each block's accumulator (`bias`).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu/kernels.h"
#include "cpu/vec_avx2.h"

namespace straw::cpu {

namespace {

constexpr int KB = kAttnKeyBlock;

// One fp16 value with F16C (exact, as quant::fp16_to_fp32, whose bit manipulation showed in
// profiles: a block scale per 32 elements of every K and V row).
inline float half_to_float(uint16_t h) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

// Row j of one head's rows of the cache (K or V, element type t, `dim` elements; cache_head) as
// floats (for Q8_0 and Q4_0, dim is a multiple of 32: whole blocks of an fp16 scale and 32 levels).
inline void load_row(ops::KvType t, const uint8_t* head, int64_t j, int dim, float* dst) {
  const uint8_t* src = head + j * ops::kv_row_bytes(t, dim);
  switch (t) {
    case ops::KvType::F32:
      std::memcpy(dst, src, size_t(dim) * 4);
      return;
    case ops::KvType::F16:
      for (int d = 0; d < dim; d += 8)
        _mm256_storeu_ps(
            dst + d,
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * d))));
      return;
    case ops::KvType::Q8_0:
      for (int b = 0; b < dim / 32; ++b, src += 34) {
        uint16_t h;
        std::memcpy(&h, src, 2);
        const __m256 scale = _mm256_set1_ps(half_to_float(h));
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + 2 + 8 * i));
          const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
          _mm256_storeu_ps(dst + 32 * b + 8 * i, _mm256_mul_ps(f, scale));
        }
      }
      return;
    case ops::KvType::Q4_0:
      // 16 bytes of nibbles: the low ones are elements 0..15, the high ones 16..31; value
      // (level - 8) * d.
      for (int b = 0; b < dim / 32; ++b, src += 18) {
        uint16_t h;
        std::memcpy(&h, src, 2);
        const __m256 scale = _mm256_set1_ps(half_to_float(h));
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2));
        const __m128i mask = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(bytes, mask), eight);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask), eight);
        const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[i]));
          _mm256_storeu_ps(dst + 32 * b + 8 * i, _mm256_mul_ps(f, scale));
        }
      }
      return;
  }
}

// Software prefetch (into L1) of the cache lines of bytes [p, p + n), n > 0.
inline void prefetch_bytes(const uint8_t* p, size_t n) {
  const auto line = [](const uint8_t* a) {
    _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T0);
  };
  for (size_t o = 0; o < n; o += 64) line(p + o);
  line(p + n - 1);  // p need not start a line
}

struct Ctx {
  const float* q;
  const ops::KvLayer* kv;
  const ops::AttentionParams* p;
  int group, kv_head, t0, D, Dv;
  const uint8_t* kh;  // the KV head's K rows and V rows (cache_head)
  const uint8_t* vh;
  // The quantized query rows (Q8_0 / Q4_0 K): row r's levels at q8 + r * D, its scales and
  // biases (-offset * sum of levels) at dq / bias + r * D / 32.
  const int8_t* q8 = nullptr;
  const float* dq = nullptr;
  const int32_t* bias = nullptr;
  const float* qrow(int r) const {
    const int t = t0 + r / group, h = kv_head * group + r % group;
    return q + (int64_t(t) * p->n_heads + h) * D;
  }
  // Keys visible to row r: 0 .. n_visible(r) - 1.
  int64_t n_visible(int r) const { return p->pos0 + t0 + r / group + 1; }
};

// The four horizontal sums of a0..a3, in that order.
inline __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// Scores S[r][j] = q_r . k_{j0+j} * scale for one query token: each key row converted once.
// Four rows per pass, their sums reduced together (hsum4) and stored through a fixed-size array,
// so that the accumulators stay in registers.
void scores_direct(const Ctx& c, int rows, int64_t j0, int kb, float* kbuf, float* S) {
  const __m128 scale = _mm_set1_ps(c.p->scale);
  for (int j = 0; j < kb; ++j) {
    load_row(c.kv->k_type, c.kh, j0 + j, c.D, kbuf);
    for (int r0 = 0; r0 < rows; r0 += 4) {
      const int nr = std::min(4, rows - r0);
      const float* q0 = c.qrow(r0);
      const float* q1 = c.qrow(r0 + std::min(1, nr - 1));
      const float* q2 = c.qrow(r0 + std::min(2, nr - 1));
      const float* q3 = c.qrow(r0 + std::min(3, nr - 1));
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int d = 0; d < c.D; d += 8) {
        const __m256 k = _mm256_loadu_ps(kbuf + d);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + d), k, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + d), k, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q2 + d), k, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q3 + d), k, a3);
      }
      alignas(16) float s[4];
      _mm_store_ps(s, _mm_mul_ps(hsum4(a0, a1, a2, a3), scale));
      for (int i = 0; i < nr; ++i) S[(r0 + i) * KB + j] = s[i];
    }
  }
}

// In-register transpose of 8 rows of 8 floats.
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Kt[d][j] (at Kt + d * KB + j): keys [j0, j0 + kb) of the head as floats, transposed, padded to
// a multiple of 16 keys with zeros.
void transpose_key_block(const Ctx& c, int64_t j0, int kb, float* kbuf, float* Kt) {
  const int kb16 = (kb + 15) / 16 * 16;
  for (int jb = 0; jb < kb16; jb += 8) {
    // Eight key rows as floats (zero past the block), then 8x8 transposes into Kt.
    for (int j = 0; j < 8; ++j) {
      if (jb + j < kb)
        load_row(c.kv->k_type, c.kh, j0 + jb + j, c.D, kbuf + size_t(j) * c.D);
      else
        std::fill_n(kbuf + size_t(j) * c.D, c.D, 0.0f);
    }
    for (int d = 0; d < c.D; d += 8) {
      __m256 r[8];
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(kbuf + size_t(j) * c.D + d);
      transpose8(r);
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(Kt + (d + i) * KB + jb, r[i]);
    }
  }
}

// Scores through the transposed block (transpose_key_block): 4 rows x 16 keys of accumulators.
inline void scores_tiled(const Ctx& c, int rows, int64_t j0, int kb, float* kbuf, float* Kt,
                         float* S) {
  transpose_key_block(c, j0, kb, kbuf, Kt);
  const int kb16 = (kb + 15) / 16 * 16;
  const __m256 scale = _mm256_set1_ps(c.p->scale);
  for (int r0 = 0; r0 < rows; r0 += 4) {
    const int nr = std::min(4, rows - r0);
    const float* qr[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) qr[i] = c.qrow(r0 + std::min(i, nr - 1));
    for (int jb = 0; jb < kb16; jb += 16) {
      __m256 acc[4][2];
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
      for (int d = 0; d < c.D; ++d) {
        const __m256 k0 = _mm256_loadu_ps(Kt + d * KB + jb);
        const __m256 k1 = _mm256_loadu_ps(Kt + d * KB + jb + 8);
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          const __m256 qd = _mm256_broadcast_ss(qr[i] + d);
          acc[i][0] = _mm256_fmadd_ps(qd, k0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_ps(qd, k1, acc[i][1]);
        }
      }
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        if (i >= nr) break;
        _mm256_storeu_ps(S + (r0 + i) * KB + jb, _mm256_mul_ps(acc[i][0], scale));
        _mm256_storeu_ps(S + (r0 + i) * KB + jb + 8, _mm256_mul_ps(acc[i][1], scale));
      }
    }
  }
}

// O[r0], O[r1] += sum_j P[r][j] V[j] over ND * 8 output columns from d0.
template <int ND>
inline void pv_tile(const float* p0, const float* p1, const float* V, int Dv, int n_keys, int d0,
                    float* o0, float* o1, bool two) {
  __m256 a0[ND], a1[ND];
#pragma GCC unroll 4
  for (int k = 0; k < ND; ++k) {
    a0[k] = _mm256_loadu_ps(o0 + d0 + 8 * k);
    a1[k] = _mm256_loadu_ps(o1 + d0 + 8 * k);
  }
  for (int j = 0; j < n_keys; ++j) {
    const __m256 w0 = _mm256_broadcast_ss(p0 + j), w1 = _mm256_broadcast_ss(p1 + j);
    const float* v = V + size_t(j) * Dv + d0;
#pragma GCC unroll 4
    for (int k = 0; k < ND; ++k) {
      const __m256 vv = _mm256_loadu_ps(v + 8 * k);
      a0[k] = _mm256_fmadd_ps(w0, vv, a0[k]);
      a1[k] = _mm256_fmadd_ps(w1, vv, a1[k]);
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < ND; ++k) {
    _mm256_storeu_ps(o0 + d0 + 8 * k, a0[k]);
    if (two) _mm256_storeu_ps(o1 + d0 + 8 * k, a1[k]);
  }
}

// Online softmax over one block of keys [j0, j0 + kb) for every row: S (rows x KB scores)
// becomes the probabilities (0 for masked keys), M / L (running max and sum) advance, and O is
// rescaled by e^(m_old - m_new). Returns the largest number of keys visible to any row.
inline int online_softmax(const Ctx& c, int rows, int64_t j0, int kb, float* S, float* O, float* M,
                          float* L) {
  int max_vis = 0;
  for (int r = 0; r < rows; ++r) {
    float* s = S + size_t(r) * KB;
    const int vis = int(std::clamp<int64_t>(c.n_visible(r) - j0, 0, kb));
    max_vis = std::max(max_vis, vis);
    if (vis == 0) {
      std::fill_n(s, kb, 0.0f);
      continue;
    }
    __m256 vmax = _mm256_set1_ps(M[r]);
    int j = 0;
    for (; j + 8 <= vis; j += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + j));
    float mx = avx2::hmax(vmax);
    for (; j < vis; ++j) mx = std::max(mx, s[j]);
    const float corr = std::exp(M[r] - mx);
    M[r] = mx;
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 sum = _mm256_setzero_ps();
    for (j = 0; j + 8 <= vis; j += 8) {
      const __m256 e = avx2::exp(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmx));
      _mm256_storeu_ps(s + j, e);
      sum = _mm256_add_ps(sum, e);
    }
    float tail = 0.0f;
    for (; j < vis; ++j) {
      s[j] = std::exp(s[j] - mx);
      tail += s[j];
    }
    for (j = vis; j < kb; ++j) s[j] = 0.0f;
    L[r] = L[r] * corr + (avx2::hsum(sum) + tail);
    if (corr != 1.0f) {
      const __m256 vc = _mm256_set1_ps(corr);
      float* o = O + size_t(r) * c.Dv;
      for (int d = 0; d < c.Dv; d += 8)
        _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), vc));
    }
  }
  return max_vis;
}

// ---- integer scores (Q8_0 / Q4_0 keys)
// ------------------------------------------------------------ A Dot policy: kUnsignedQ8 (Q8_0 keys
// as k + 128 rather than signed) and dot4<kSigned>(acc, k, x): acc += k . x per int32 lane (4 bytes
// each), k unsigned unless kSigned.

// Repacks keys [j0, j0 + kb) of the head into 8-key tiles: Kq[(g * nb + b) * 8 + c] is register c
// of block b of tile g, Dk[(g * nb + b) * 8 + k] the scale of key 8g + k's block b (0 for the keys
// past kb, whose levels are 0).
template <class Dot>
void repack_keys(const Ctx& c, int64_t j0, int kb, __m256i* Kq, float* Dk) {
  const ops::KvType t = c.kv->k_type;
  const int nb = c.D / 32;
  const size_t row_bytes = ops::kv_row_bytes(t, c.D);
  const size_t block_bytes = t == ops::KvType::Q8_0 ? 34 : 18;
  const uint8_t* base = c.kh;
  for (int g = 0; g < (kb + 7) / 8; ++g) {
    for (int b = 0; b < nb; ++b) {
      __m256i r[8];
      float* dk = Dk + (size_t(g) * nb + b) * 8;
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const int j = 8 * g + k;
        if (j >= kb) {
          r[k] = _mm256_setzero_si256();
          dk[k] = 0.0f;
          continue;
        }
        const uint8_t* src = base + size_t(j0 + j) * row_bytes + b * block_bytes;
        uint16_t h;
        std::memcpy(&h, src, 2);
        dk[k] = half_to_float(h);
        if (t == ops::KvType::Q8_0) {
          r[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2));
          if (Dot::kUnsignedQ8) r[k] = _mm256_xor_si256(r[k], _mm256_set1_epi8(char(0x80)));
        } else {
          const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2));
          const __m128i m = _mm_set1_epi8(0x0F);
          r[k] = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
        }
      }
      __m256 f[8];
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) f[k] = _mm256_castsi256_ps(r[k]);
      transpose8(f);
      __m256i* dst = Kq + (size_t(g) * nb + b) * 8;
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) _mm256_storeu_si256(dst + k, _mm256_castps_si256(f[k]));
    }
  }
}

// sum[i] += the products of block b of row r0 + i with the 8 keys of tile k (kSigned: Q8_0 levels
// with the sign trick).
template <class Dot, int NR, bool kSigned>
inline void block_sums(const Ctx& c, int r0, int b, const __m256i* k, __m256i* sum) {
#pragma GCC unroll 8
  for (int cc = 0; cc < 8; ++cc) {
    const __m256i kc = _mm256_loadu_si256(k + cc);
#pragma GCC unroll 4
    for (int i = 0; i < NR; ++i) {
      int32_t x;
      std::memcpy(&x, c.q8 + size_t(r0 + i) * c.D + 32 * b + 4 * cc, 4);
      sum[i] = Dot::template dot4<kSigned>(sum[i], kc, _mm256_set1_epi32(x));
    }
  }
}

// Scores of NR rows from r0 (NR <= 4) against the repacked keys: S[r][j] for j < 8 * tiles.
template <class Dot, int NR, bool kSigned>
void scores_int_rows(const Ctx& c, int r0, int tiles, const __m256i* Kq, const float* Dk,
                     float* S) {
  const int nb = c.D / 32;
  const __m256 scale = _mm256_set1_ps(c.p->scale);
  for (int g = 0; g < tiles; ++g) {
    __m256 acc[NR];
#pragma GCC unroll 4
    for (int i = 0; i < NR; ++i) acc[i] = _mm256_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      __m256i sum[NR];
#pragma GCC unroll 4
      for (int i = 0; i < NR; ++i) sum[i] = _mm256_set1_epi32(c.bias[size_t(r0 + i) * nb + b]);
      block_sums<Dot, NR, kSigned>(c, r0, b, Kq + (size_t(g) * nb + b) * 8, sum);
      const __m256 dk = _mm256_loadu_ps(Dk + (size_t(g) * nb + b) * 8);
#pragma GCC unroll 4
      for (int i = 0; i < NR; ++i)
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[i]),
                                 _mm256_mul_ps(dk, _mm256_set1_ps(c.dq[size_t(r0 + i) * nb + b])),
                                 acc[i]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < NR; ++i)
      _mm256_storeu_ps(S + size_t(r0 + i) * KB + 8 * g, _mm256_mul_ps(acc[i], scale));
  }
}

template <class Dot, bool kSigned>
void scores_int_all(const Ctx& c, int rows, int tiles, const __m256i* Kq, const float* Dk,
                    float* S) {
  int r0 = 0;
  for (; r0 + 4 <= rows; r0 += 4) scores_int_rows<Dot, 4, kSigned>(c, r0, tiles, Kq, Dk, S);
  switch (rows - r0) {
    case 3:
      scores_int_rows<Dot, 3, kSigned>(c, r0, tiles, Kq, Dk, S);
      break;
    case 2:
      scores_int_rows<Dot, 2, kSigned>(c, r0, tiles, Kq, Dk, S);
      break;
    case 1:
      scores_int_rows<Dot, 1, kSigned>(c, r0, tiles, Kq, Dk, S);
      break;
    default:
      break;
  }
}

// Scores S[r][j] = q_r . k_{j0+j} * scale of every row for a Q8_0 / Q4_0 K cache (keys up to the
// next multiple of 8 past kb are scored too; they are masked afterwards).
template <class Dot>
void scores_int(const Ctx& c, int rows, int64_t j0, int kb, __m256i* Kq, float* Dk, float* S) {
  repack_keys<Dot>(c, j0, kb, Kq, Dk);
  const int tiles = (kb + 7) / 8;
  if constexpr (!Dot::kUnsignedQ8) {
    if (c.kv->k_type == ops::KvType::Q8_0) {
      scores_int_all<Dot, true>(c, rows, tiles, Kq, Dk, S);
      return;
    }
  }
  scores_int_all<Dot, false>(c, rows, tiles, Kq, Dk, S);
}

// ---- decode: one query token ---------------------------------------------------------------
//
// With one query token an item has only its group's rows (the query heads of one KV head), so the
// general path's conversion of each K / V row into a buffer, read back by a few rows, costs about
// as much as the products. A policy's `decode` (the fused decode: attention_avx2.cpp on 256-bit
// registers, attention_avx512.cpp on 512-bit ones) works on the rows where they lie instead: each
// key row is converted in registers and dotted with every query row, one accumulator per (row,
// key), the accumulators reduced several at once; each V row is converted in registers and used
// by up to 6 rows, with a quantized row's block scales folded into the probabilities first
// (W = P d_v; on AVX-512 rounded to 16-bit integers for vpdpwssd). It serves heads up to kDecodeDim
// (multiples of 32) and groups up to kDecodeRows rows; other shapes take the general path.

constexpr int kDecodeRows = 8;
constexpr int kDecodeDim = 256;

// The head's rows of a cache (K or V; cache_head): row 0, the bytes of a row and the rows the
// cache has.
struct HeadRows {
  const uint8_t* base;
  size_t stride;
  int64_t n_rows;
  const uint8_t* row(int64_t j) const { return base + size_t(j) * stride; }
  // Software prefetch of row j (when the cache has it). The fused decodes prefetch K rows
  // kDecodePrefetch keys ahead of their scores, and each V row when its key is scored (P.V comes
  // after the block's softmax).
  void prefetch(int64_t j) const {
    if (j < n_rows) prefetch_bytes(row(j), stride);
  }
};
inline HeadRows head_rows(ops::KvType t, const uint8_t* head, int64_t head_dim, int64_t n_rows) {
  return {head, ops::kv_row_bytes(t, head_dim), n_rows};
}
inline constexpr int kDecodePrefetch = 16;

// f(std::integral_constant<int, n>{}) for n = N..kMax (larger n as kMax): the one place the fused
// decodes turn a row count into a template argument.
template <int kMax, int N = 1, class F>
void with_rows(int n, F&& f) {
  if constexpr (N < kMax) {
    if (n == N) return f(std::integral_constant<int, N>{});
    return with_rows<kMax, N + 1>(n, f);
  } else {
    return f(std::integral_constant<int, kMax>{});
  }
}

// The K rows of a scoring pass over keys j0 + j .. j0 + j + KP - 1 (keys past kb: the block's
// last, whose scores are not kept), prefetching K rows kDecodePrefetch keys ahead and these keys'
// V rows.
template <int KP>
__attribute__((always_inline)) inline void pass_rows(const HeadRows& k, const HeadRows& v,
                                                     int64_t j0, int j, int kb,
                                                     const uint8_t** kr) {
#pragma GCC unroll 16
  for (int i = 0; i < KP; ++i) {
    kr[i] = k.row(j0 + std::min(j + i, kb - 1));
    k.prefetch(j0 + j + i + kDecodePrefetch);
    if (j + i < kb) v.prefetch(j0 + j + i);
  }
}

// Whether the fused decodes serve a group of `rows` query rows with these head sizes.
inline bool decode_serves(const Ctx& c, int rows) {
  return rows <= kDecodeRows && c.D % 32 == 0 && c.Dv % 32 == 0 && c.D <= kDecodeDim &&
         c.Dv <= kDecodeDim;
}

// qf[r][e] = q_r[e] * the attention scale for the group's rows ([rows][D]: float keys).
inline void scaled_query_rows(const Ctx& c, int rows, float* qf) {
  for (int r = 0; r < rows; ++r) {
    const float* q = c.qrow(r);
    for (int e = 0; e < c.D; ++e) qf[r * c.D + e] = q[e] * c.p->scale;
  }
}

// f(std::integral_constant<ops::KvType, t>{}): the one place the fused decodes turn a V cache type
// into a template argument.
template <class F>
void with_kv_type(ops::KvType t, F&& f) {
  switch (t) {
    case ops::KvType::F32:
      return f(std::integral_constant<ops::KvType, ops::KvType::F32>{});
    case ops::KvType::F16:
      return f(std::integral_constant<ops::KvType, ops::KvType::F16>{});
    case ops::KvType::Q8_0:
      return f(std::integral_constant<ops::KvType, ops::KvType::Q8_0>{});
    case ops::KvType::Q4_0:
      return f(std::integral_constant<ops::KvType, ops::KvType::Q4_0>{});
  }
}

// P.V row groups: up to 6 rows share each converted piece of a V row (6 x 4 zmm or 6 x 2 ymm
// accumulators); 7 and 8 rows go as 4 + 3 / 4. g(r0, nr) for each group.
template <class G>
void pv_row_groups(int rows, G&& g) {
  if (rows <= 6) return g(0, rows);
  g(0, 4);
  g(4, rows - 4);
}

// The row stride of the fused decodes' W = P d_v over a quantized V cache, [row][V block][key]
// (one key block): fixed, so that P.V addresses every row's W from one pointer.
inline constexpr int kWRow = kDecodeDim / 32 * KB;

template <class Dot>
void attention_kernel(const float* q, const ops::KvLayer& kv, float* out,
                      const ops::AttentionParams& p, int kv_head, int t0, int t1, int64_t k0,
                      int64_t k1, float* partial, float* scratch) {
  Ctx c{q,
        &kv,
        &p,
        p.n_heads / p.n_kv_heads,
        kv_head,
        t0,
        p.head_dim,
        p.head_dim_v,
        cache_head(kv.k_type, kv.k, kv.n_ctx, p.head_dim, kv_head),
        cache_head(kv.v_type, kv.v, kv.n_ctx, p.head_dim_v, kv_head)};
  const int rows = c.group * (t1 - t0);
  const int64_t k_end = std::min<int64_t>(k1, p.pos0 + t1);
  // Scratch: Kt or one K row [D * KB], V block [KB][Dv], scores [rows][KB], O [rows][Dv], m, l.
  float* Kt = scratch;
  float* V = Kt + size_t(KB) * c.D;
  float* S = V + std::max(size_t(KB) * c.Dv, size_t(8) * c.D);
  float* O = S + size_t(rows) * KB;
  float* M = O + size_t(rows) * c.Dv;
  float* L = M + rows;
  const bool int_keys = ops::kv_quantized(kv.k_type);
  if (int_keys) {
    // After L: scales and biases [rows][D / 32], then the levels [rows][D].
    const int nb = c.D / 32;
    auto* dq = L + rows;
    auto* bias = reinterpret_cast<int32_t*>(dq + size_t(rows) * nb);
    auto* q8 = reinterpret_cast<int8_t*>(bias + size_t(rows) * nb);
    const int32_t offset = kv.k_type == ops::KvType::Q4_0 ? 8 : Dot::kUnsignedQ8 ? 128 : 0;
    for (int r = 0; r < rows; ++r) {
      int32_t* br = bias + size_t(r) * nb;
      quantize_query(c.qrow(r), c.D, q8 + size_t(r) * c.D, dq + size_t(r) * nb, br);
      for (int b = 0; b < nb; ++b) br[b] *= -offset;
    }
    c.q8 = q8;
    c.dq = dq;
    c.bias = bias;
  }
  // Integer scores: the repacked keys [KB][D] bytes and their scales [KB][D / 32] in Kt.
  auto* Kq = reinterpret_cast<__m256i*>(Kt);
  float* Dk = Kt + size_t(KB) * c.D / 4;
  std::fill_n(O, size_t(rows) * c.Dv, 0.0f);
  std::fill_n(M, rows, -std::numeric_limits<float>::infinity());
  std::fill_n(L, rows, 0.0f);
  float* kbuf = V;  // up to 8 converted K rows; V is loaded after the scores

  // Decode (one query token): the policy's fused path where it has one and the shapes allow it
  // (it returns false otherwise, having done nothing).
  bool fused = false;
  if constexpr (requires { Dot::decode(c, rows, k0, k_end, S, O, M, L, Kt, V); })
    fused = t1 - t0 == 1 && Dot::decode(c, rows, k0, k_end, S, O, M, L, Kt, V);
  for (int64_t j0 = k0; !fused && j0 < k_end; j0 += KB) {
    const int kb = int(std::min<int64_t>(KB, k_end - j0));
    if (int_keys) {
      if constexpr (requires { Dot::scores_int(c, rows, j0, kb, Kt, S); })
        Dot::scores_int(c, rows, j0, kb, Kt, S);  // the policy's own (AVX-512: 512-bit)
      else
        scores_int<Dot>(c, rows, j0, kb, Kq, Dk, S);
    } else if (t1 - t0 == 1) {
      scores_direct(c, rows, j0, kb, kbuf, S);
    } else if constexpr (requires { Dot::scores_tiled(c, rows, j0, kb, kbuf, Kt, S); }) {
      Dot::scores_tiled(c, rows, j0, kb, kbuf, Kt, S);  // the policy's own (AVX-512: 512-bit)
    } else {
      scores_tiled(c, rows, j0, kb, kbuf, Kt, S);
    }
    // V rows as floats: the policy's own conversion of quantized rows where it has one (AVX-512:
    // 512-bit registers).
    for (int j = 0; j < kb; ++j) {
      if constexpr (requires { Dot::load_quant_row(kv.v_type, c.vh, j0, c.Dv, V); }) {
        if (ops::kv_quantized(kv.v_type)) {
          Dot::load_quant_row(kv.v_type, c.vh, j0 + j, c.Dv, V + size_t(j) * c.Dv);
          continue;
        }
      }
      load_row(kv.v_type, c.vh, j0 + j, c.Dv, V + size_t(j) * c.Dv);
    }

    int max_vis;
    if constexpr (requires { Dot::softmax(c, rows, j0, kb, S, O, M, L); })
      max_vis = Dot::softmax(c, rows, j0, kb, S, O, M, L);  // the policy's own (AVX-512)
    else
      max_vis = online_softmax(c, rows, j0, kb, S, O, M, L);

    // O[r] += sum_j P[r][j] V[j]: the policy's own loop where it has one (AVX-512: 512-bit
    // registers), else two rows and 32 output columns at a time.
    if constexpr (requires { Dot::pv(S, V, O, rows, c.Dv, max_vis); }) {
      Dot::pv(S, V, O, rows, c.Dv, max_vis);
    } else {
      for (int r0 = 0; r0 < rows; r0 += 2) {
        const int r1 = std::min(r0 + 1, rows - 1);
        const float* p0 = S + size_t(r0) * KB;
        const float* p1 = S + size_t(r1) * KB;
        float* o0 = O + size_t(r0) * c.Dv;
        float* o1 = O + size_t(r1) * c.Dv;
        int d0 = 0;
        for (; d0 + 32 <= c.Dv; d0 += 32)
          pv_tile<4>(p0, p1, V, c.Dv, max_vis, d0, o0, o1, r1 != r0);
        for (; d0 < c.Dv; d0 += 8) pv_tile<1>(p0, p1, V, c.Dv, max_vis, d0, o0, o1, r1 != r0);
      }
    }
  }

  if (partial) {
    for (int r = 0; r < rows; ++r) {
      float* dst = partial + size_t(r) * (c.Dv + 2);
      std::copy_n(O + size_t(r) * c.Dv, c.Dv, dst);
      dst[c.Dv] = M[r];
      dst[c.Dv + 1] = L[r];
    }
    return;
  }
  for (int r = 0; r < rows; ++r) {
    const int t = t0 + r / c.group, h = kv_head * c.group + r % c.group;
    float* o = out + (int64_t(t) * p.n_heads + h) * c.Dv;
    const float inv = 1.0f / L[r];
    for (int d = 0; d < c.Dv; ++d) o[d] = O[size_t(r) * c.Dv + d] * inv;
  }
}

}  // namespace
}  // namespace straw::cpu
