// AVX2 matmul kernels (with FMA and F16C): the tiled integer kernels on 256-bit registers, and
// FMA kernels for float weights. Built with -mavx2 -mfma -mf16c -mbmi2; only called when
// cpu_features() reports them. The same tile kernel is also instantiated for AVX-VNNI
// (kMatKernelsAvxVnni), only called when cpu_features().avx_vnni.
//
// Same tiled layout as the AVX-512 kernels (kernels.h): a 64-byte chunk is rows 0-7 in its first
// 32 bytes and rows 8-15 in the second, so a tile is processed as two 8-row halves in one pass.
// Two dot-product policies multiply 4 levels by 4 int8 activations per int32 lane:
//   Maddubs (AVX2): vpmaddubsw (to 16-bit pairs) + vpmaddwd (to 32-bit). vpmaddubsw saturates
//     above 32767, so the signed formats (IQ4 levels, Q8_0) use |w| and sign(x, w) instead of an
//     offset: |w| <= 128 and |x| <= 127 keep each pair sum below 32767.
//   Vpdpbusd (AVX-VNNI): one VEX vpdpbusd, which does not saturate, so every format decodes to
//     unsigned levels u = w + offset as on AVX-512 (IQ4 table of level+128, Q8_0 xor 0x80), the
//     offset folded into the per-group bias of the activations (act_params). It frees the
//     registers of the sign trick and of vpmaddwd's constant, so a call takes up to 4 tokens.
//
// GCC 12's intrinsics headers start some results from _mm*_undefined_*(), which -Wuninitialized
// reports once inlined (a false positive of GCC 12); the values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/kernels.h"
#include "cpu/vec_avx2.h"
#include "quant/iq4_nl.h"

namespace straw::cpu {

namespace {

using quant::Type;

inline int32_t load32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline __m256i load32b(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline __m256 half8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m128i load8(const uint8_t* p) {
  return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
}
inline __m256 u8_to_ps(__m128i v) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
}
inline __m256 s8_to_ps(__m128i v) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}
inline __m256i nib_lo(__m256i v) {
  return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}
inline __m256i nib_hi(__m256i v) {
  return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F));
}

// ---- dot-product policies ----------------------------------------------------------------------
// kUnsigned: whether the signed formats decode to unsigned levels (offset 128) or signed ones (the
// sign trick in dot4); kMaxTok: tokens per kernel call (the accumulators of 2 halves x T tokens,
// int and float, must fit in the 16 ymm registers with the weights and activation broadcasts).

struct Maddubs {
  static constexpr bool kUnsigned = false;
  static constexpr int kMaxTok = 2;  // 2 halves x 2 tokens x (int + float): 8 of 16 registers
  // acc += (4 levels of w) . (4 activations x) per int32 lane.
  template <bool kSigned>
  static __m256i dot4(__m256i acc, __m256i w, __m256i x) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i p;
    if constexpr (kSigned)
      p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    else
      p = _mm256_maddubs_epi16(w, x);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
  }
};

struct Vpdpbusd {
  static constexpr bool kUnsigned = true;
  // 2 halves x 3 tokens x (int + float) accumulators: 12 of 16 registers. 4 tokens spill (the
  // activation broadcasts then compete with the accumulators): 10-15 % slower prefill on Zen 5.
  static constexpr int kMaxTok = 3;
  // acc += u . x per int32 lane. Inline assembly rather than the intrinsic: the intrinsic needs
  // -mavxvnni on the calling function, i.e. on the shared tile kernel template, and would then let
  // the compiler fuse the AVX2 policy's vpmaddwd + vpaddd into vpdpwssd (clang does), which the
  // AVX2-only CPUs lack. {vex}: the VEX encoding (AVX-VNNI), not AVX512-VNNI's EVEX; "x" keeps the
  // operands in ymm0-15, which VEX can encode.
  template <bool kSigned>
  static __m256i dot4(__m256i acc, __m256i w, __m256i x) {
    static_assert(!kSigned, "vpdpbusd multiplies unsigned levels");
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(w), "x"(x));
    return acc;
  }
};

// The IQ4 levels in each 128-bit lane, for vpshufb: signed, or plus 128 (unsigned).
template <bool kUnsigned>
inline __m256i iq4_table() {
  alignas(16) uint8_t t[16];
  for (int i = 0; i < 16; ++i) t[i] = uint8_t(quant::kIQ4Values[i] + (kUnsigned ? 128 : 0));
  return _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(t)));
}

// ---- decoders (see matmul_avx512.cpp); `h` selects rows 0-7 or 8-15 ---------------------------
// The formats with signed levels (IQ4_NL, IQ4_XS, Q8_0) take the policy's level encoding: signed
// (kSigned, offset 0) or unsigned (offset 128).

struct DecQ4_0 {
  static constexpr int kBlock = 32, kGroup = 32, kOffset = 8, kSpan = 32;
  static constexpr bool kMin = false, kSigned = false;
  Planes P;
  void begin(const Planes& p) { P = p; }
  __m256 scale(int, int h) const { return half8(P.d + 8 * h); }
  void weights(int, int p, int h, __m256i& w0, __m256i& w1) const {
    const __m256i v = load32b(P.qs + 64 * p + 32 * h);
    w0 = nib_lo(v);
    w1 = nib_hi(v);
  }
};

template <bool kUnsigned>
struct DecIQ4NL {
  static constexpr int kBlock = 32, kGroup = 32, kOffset = kUnsigned ? 128 : 0, kSpan = 32;
  static constexpr bool kMin = false, kSigned = !kUnsigned;
  Planes P;
  __m256i table = iq4_table<kUnsigned>();
  void begin(const Planes& p) { P = p; }
  __m256 scale(int, int h) const { return half8(P.d + 8 * h); }
  void weights(int, int p, int h, __m256i& w0, __m256i& w1) const {
    const __m256i v = load32b(P.qs + 64 * p + 32 * h);
    w0 = _mm256_shuffle_epi8(table, nib_lo(v));
    w1 = _mm256_shuffle_epi8(table, nib_hi(v));
  }
};

inline void bit5(__m256i hb, int p, __m256i& b0, __m256i& b1) {
  const __m256i m = _mm256_set1_epi8(0x10);
  b0 = _mm256_and_si256(_mm256_sll_epi16(hb, _mm_cvtsi32_si128(4 - p)), m);
  b1 = _mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(p)), m);
}

template <bool kWithMin>
struct DecQ5 {
  static constexpr int kBlock = 32, kGroup = 32, kOffset = kWithMin ? 0 : 16, kSpan = 32;
  static constexpr bool kMin = kWithMin, kSigned = false;
  Planes P;
  void begin(const Planes& p) { P = p; }
  __m256 scale(int, int h) const { return half8(P.d + 8 * h); }
  __m256 min(int, int h) const { return half8(P.m + 8 * h); }
  void weights(int, int p, int h, __m256i& w0, __m256i& w1) const {
    const __m256i v = load32b(P.qs + 64 * p + 32 * h);
    __m256i b0, b1;
    bit5(load32b(P.qh + 32 * h), p, b0, b1);
    w0 = _mm256_or_si256(nib_lo(v), b0);
    w1 = _mm256_or_si256(nib_hi(v), b1);
  }
};

template <bool kUnsigned>
struct DecQ8_0 {
  static constexpr int kBlock = 32, kGroup = 32, kOffset = kUnsigned ? 128 : 0, kSpan = 32;
  static constexpr bool kMin = false, kSigned = !kUnsigned;
  Planes P;
  void begin(const Planes& p) { P = p; }
  __m256 scale(int, int h) const { return half8(P.d + 8 * h); }
  void weights(int, int p, int h, __m256i& w0, __m256i& w1) const {
    w0 = load32b(P.qs + 128 * p + 32 * h);
    w1 = load32b(P.qs + 128 * p + 64 + 32 * h);
    if constexpr (kUnsigned) {
      const __m256i flip = _mm256_set1_epi8(char(0x80));
      w0 = _mm256_xor_si256(w0, flip);
      w1 = _mm256_xor_si256(w1, flip);
    }
  }
};

template <bool kUnsigned>
struct DecIQ4XS {
  static constexpr int kBlock = 256, kGroup = 32, kOffset = kUnsigned ? 128 : 0, kSpan = 32;
  static constexpr bool kMin = false, kSigned = !kUnsigned;
  Planes P;
  __m256i table = iq4_table<kUnsigned>();
  // The groups' multipliers ls - 32 as int8, unpacked once per super-block as on AVX-512
  // (quant_decode_avx512.h): group 2k's 16 rows at even[16k..], group 2k+1's at odd[16k..].
  alignas(32) int8_t even[64], odd[64];
  void begin(const Planes& p) {
    P = p;
    const __m256i nib = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(3);
    const __m256i m32 = _mm256_set1_epi8(32), shift = _mm256_set_epi64x(4, 4, 0, 0);
    for (int i = 0; i < 2; ++i) {
      // Groups 4i..4i+3: nibble pairs lanes 2i, 2i+1; high-bit bytes i in both 128-bit lanes,
      // shifted so that groups 4i + 2l, 4i + 2l + 1 sit at bits 0-1 / 2-3 of lane l.
      const __m256i lo = load32b(p.sc + 32 * i);
      const __m256i he = _mm256_srlv_epi64(
          _mm256_broadcastsi128_si256(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(p.sc + 64 + 16 * i))),
          shift);
      const __m256i ho = _mm256_srli_epi64(he, 2);
      auto ls = [&](__m256i l, __m256i h) {
        return _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(l, nib),
                                               _mm256_slli_epi64(_mm256_and_si256(h, two), 4)),
                               m32);
      };
      _mm256_store_si256(reinterpret_cast<__m256i*>(even + 32 * i), ls(lo, he));
      _mm256_store_si256(reinterpret_cast<__m256i*>(odd + 32 * i),
                         ls(_mm256_srli_epi64(lo, 4), ho));
    }
  }
  __m256 scale(int g, int h) const {
    const int8_t* m = (g % 2 ? odd : even) + 16 * (g / 2) + 8 * h;
    return _mm256_mul_ps(half8(P.d + 8 * h), s8_to_ps(load8(reinterpret_cast<const uint8_t*>(m))));
  }
  void weights(int g, int p, int h, __m256i& w0, __m256i& w1) const {
    const __m256i v = load32b(P.qs + 256 * g + 64 * p + 32 * h);
    w0 = _mm256_shuffle_epi8(table, nib_lo(v));
    w1 = _mm256_shuffle_epi8(table, nib_hi(v));
  }
};

template <bool kQ5>
struct DecQK {
  static constexpr int kBlock = 256, kGroup = 32, kOffset = 0, kSpan = 256;
  static constexpr bool kMin = true, kSigned = false;
  Planes P;
  // The 8 sub-blocks' 6-bit scales (sm[g]) and mins (sm[8 + g]) of the 16 rows as bytes, unpacked
  // once per super-block as on AVX-512 (quant_decode_avx512.h has the plane's layout).
  alignas(32) uint8_t sm[16][16];
  void begin(const Planes& p) {
    P = p;
    const __m256i six = _mm256_set1_epi8(63), nib = _mm256_set1_epi8(0x0F);
    const __m256i two = _mm256_set1_epi8(3);
    auto high2 = [&](__m256i x) {
      return _mm256_slli_epi64(_mm256_and_si256(_mm256_srli_epi64(x, 6), two), 4);
    };
    auto store = [&](int g, __m256i v) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(sm[g]), v);
    };
    for (int i = 0; i < 2; ++i) {  // sub-blocks 2i, 2i+1 and 4 + 2i, 4 + 2i + 1
      const __m256i s = load32b(p.sc + 32 * i), m = load32b(p.sc + 64 + 32 * i);
      const __m256i hi = load32b(p.sc + 128 + 32 * i);
      store(2 * i, _mm256_and_si256(s, six));
      store(4 + 2 * i, _mm256_or_si256(_mm256_and_si256(hi, nib), high2(s)));
      store(8 + 2 * i, _mm256_and_si256(m, six));
      store(12 + 2 * i, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi64(hi, 4), nib), high2(m)));
    }
  }
  __m256 scale(int g, int h) const {
    return _mm256_mul_ps(half8(P.d + 8 * h), u8_to_ps(load8(sm[g] + 8 * h)));
  }
  __m256 min(int g, int h) const {
    return _mm256_mul_ps(negmin(h), u8_to_ps(load8(sm[8 + g] + 8 * h)));
  }
  __m256 negmin(int h) const { return _mm256_sub_ps(_mm256_setzero_ps(), half8(P.m + 8 * h)); }
  // The mins of groups g and g + 1 of rows 8h..8h+7 as an int16 pair per lane (g in the low half).
  __m256i min_pair(int g, int h) const {
    const __m128i m = _mm_unpacklo_epi8(load8(sm[8 + g] + 8 * h), load8(sm[9 + g] + 8 * h));
    return _mm256_cvtepu8_epi16(m);
  }
  void weights(int g, int p, int h, __m256i& w0, __m256i& w1) const {
    const __m256i v = load32b(P.qs + 256 * g + 64 * p + 32 * h);
    w0 = nib_lo(v);
    w1 = nib_hi(v);
    if constexpr (kQ5) {
      __m256i b0, b1;
      bit5(load32b(P.qh + 64 * g + 32 * h), p, b0, b1);
      w0 = _mm256_or_si256(w0, b0);
      w1 = _mm256_or_si256(w1, b1);
    }
  }
};

struct DecQ6K {
  static constexpr int kBlock = 256, kGroup = 16, kOffset = 32, kSpan = 256;
  static constexpr bool kMin = false, kSigned = false;
  Planes P;
  void begin(const Planes& p) { P = p; }
  __m256 scale(int g, int h) const {
    return _mm256_mul_ps(half8(P.d + 8 * h), s8_to_ps(load8(P.sc + 16 * g + 8 * h)));
  }
  void weights(int g, int p, int h, __m256i& w0, __m256i& w1) const {
    const int s = g / 2, c = 2 * (g % 2) + p;
    const __m256i v = load32b(P.qs + 256 * s + 64 * c + 32 * h);
    const __m256i h0 = load32b(P.qh + 128 * s + 32 * h), h1 = load32b(P.qh + 128 * s + 64 + 32 * h);
    const __m128i sh = _mm_cvtsi32_si128(c < 3 ? 4 - 2 * c : 2);
    const __m256i m = _mm256_set1_epi8(0x30);
    __m256i b0, b1;
    if (c < 3) {
      b0 = _mm256_sll_epi16(h0, sh);
      b1 = _mm256_sll_epi16(h1, sh);
    } else {
      b0 = _mm256_srl_epi16(h0, sh);
      b1 = _mm256_srl_epi16(h1, sh);
    }
    w0 = _mm256_or_si256(nib_lo(v), _mm256_and_si256(b0, m));
    w1 = _mm256_or_si256(nib_hi(v), _mm256_and_si256(b1, m));
  }
};

// ---- the generic tile kernel -------------------------------------------------------------------

template <class Dot, class D, int T>
void tile_kernel(const TileLayout& L, const uint8_t* tile, const ActIn* tok, float* y, int64_t ldy,
                 int rows, StreamPrefetch& pf) {
  constexpr int kGroups = D::kBlock / D::kGroup;
  __m256 acc[2][T];
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[h][t] = _mm256_setzero_ps();
  // One activation scale per block (kSpan 256, as on AVX-512): the group sums go into a block sum
  // scaled by the weights' group scale only, the minimum's part is an integer block sum, and the
  // activation scale is applied once per block. AVX2 (BM_Matmul 1536x512, STRAW_BENCH_ISA=avx2,
  // per core): Q4_K +5 % at 1 token, +10-14 % at 2-8; Q5_K +7-8 %; Q6_K +5-17 %. Up to 2 tokens
  // only: the block sums of 3 tokens (AVX-VNNI) would not fit the 16 registers beside the
  // accumulators (and this machine cannot measure AVX-VNNI); those keep the per-group scaling.
  constexpr bool kBlockScale = D::kSpan == 256 && T <= 2;
  D dec;
  for (int64_t b = 0; b < L.n_blocks; ++b) {
    dec.begin(planes(L, tile, b));
    __m256 blk[2][T];
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h)
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) blk[h][t] = _mm256_setzero_ps();
    auto& dot = kBlockScale ? blk : acc;
#pragma GCC unroll 16
    for (int g = 0; g < kGroups; ++g) {
      const int64_t e0 = b * D::kBlock + int64_t(g) * D::kGroup;
      prefetch_group<D::kBlock, D::kGroup>(pf, L, tile, b, g);
      __m256i ia[2][T], ib[2][T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m256i init =
            D::kOffset ? _mm256_set1_epi32(tok[t].bias[e0 / D::kGroup]) : _mm256_setzero_si256();
        ia[0][t] = ia[1][t] = init;
        ib[0][t] = ib[1][t] = _mm256_setzero_si256();
      }
#pragma GCC unroll 4
      for (int p = 0; p < D::kGroup / 8; ++p) {
        __m256i x0[T], x1[T];
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const int8_t* x = tok[t].q + e0 + 8 * p;
          x0[t] = _mm256_set1_epi32(load32(x));
          x1[t] = _mm256_set1_epi32(load32(x + 4));
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          __m256i w0, w1;
          dec.weights(g, p, h, w0, w1);
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t) {
            ia[h][t] = Dot::template dot4<D::kSigned>(ia[h][t], w0, x0[t]);
            // One token: a second accumulator halves the dependency chain (vpdpbusd's latency).
            __m256i& second = T == 1 ? ib[h][t] : ia[h][t];
            second = Dot::template dot4<D::kSigned>(second, w1, x1[t]);
          }
        }
      }
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const __m256 s = dec.scale(g, h);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m256 sd = kBlockScale ? s : _mm256_mul_ps(s, _mm256_set1_ps(tok[t].d[e0 / 32]));
          const __m256i sum = T == 1 ? _mm256_add_epi32(ia[h][t], ib[h][t]) : ia[h][t];
          dot[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), sd, dot[h][t]);
        }
        if constexpr (D::kMin && !kBlockScale) {
          const __m256 mn = dec.min(g, h);
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t)
            acc[h][t] = _mm256_fmadd_ps(mn, _mm256_set1_ps(tok[t].ds[e0 / 32]), acc[h][t]);
        }
      }
    }
    if constexpr (kBlockScale) {
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        if constexpr (D::kMin) {
          // blk -= dmin * sum_g m_g * sum(q_g): vpmaddwd of the mins' int16 pairs with the
          // activation's group sums, over the block's group pairs.
          __m256i im[T];
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t) im[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
          for (int g = 0; g < kGroups; g += 2) {
            const __m256i mp = dec.min_pair(g, h);
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
              int32_t pair;
              std::memcpy(&pair, tok[t].sum + b * kGroups + g, 4);
              im[t] = _mm256_add_epi32(im[t], _mm256_madd_epi16(mp, _mm256_set1_epi32(pair)));
            }
          }
          const __m256 nm = dec.negmin(h);
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t)
            blk[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(im[t]), nm, blk[h][t]);
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t)
          acc[h][t] = _mm256_fmadd_ps(blk[h][t], _mm256_set1_ps(tok[t].d[b * 8]), acc[h][t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    if (rows >= kTileRows) {
      _mm256_storeu_ps(y + t * ldy, acc[0][t]);
      _mm256_storeu_ps(y + t * ldy + 8, acc[1][t]);
    } else {
      alignas(32) float tmp[kTileRows];
      _mm256_store_ps(tmp, acc[0][t]);
      _mm256_store_ps(tmp + 8, acc[1][t]);
      std::copy_n(tmp, rows, y + t * ldy);
    }
  }
}

// tile_kernel<Dot, D, n> for 1 <= n <= T.
template <class Dot, class D, int T = Dot::kMaxTok>
void tile_tokens(int n, const TileLayout& L, const uint8_t* tile, const ActIn* tok, float* y,
                 int64_t ldy, int rows, StreamPrefetch& pf) {
  if constexpr (T > 1)
    if (n < T) return tile_tokens<Dot, D, T - 1>(n, L, tile, tok, y, ldy, rows, pf);
  tile_kernel<Dot, D, T>(L, tile, tok, y, ldy, rows, pf);
}

template <class Dot, class D>
void tiled_impl(const TileLayout& L, const uint8_t* tiles, int64_t n_tiles, int64_t n_rows,
                const uint8_t* act, int n_tok, float* y, int64_t ldy) {
  constexpr int kMaxTok = Dot::kMaxTok;
  const ActLayout A = act_layout(L.n_in);
  const int block = act_token_block(A, n_tok, kMaxTok);
  ActIn tok[kMaxTok];
  StreamPrefetch pf;
  for (int t0 = 0; t0 < n_tok; t0 += block) {
    const int t1 = std::min(n_tok, t0 + block);
    for (int64_t i = 0; i < n_tiles; ++i) {
      const int64_t rows = std::min<int64_t>(kTileRows, n_rows - i * kTileRows);
      if (rows <= 0) break;
      const uint8_t* tile = tiles + i * L.tile_bytes;
      for (int t = t0, n = 0; t < t1; t += n) {
        n = token_run(t1 - t, kMaxTok);
        for (int k = 0; k < n; ++k) {
          tok[k] = act_in(act + size_t(t + k) * A.stride, A);
        }
        tile_tokens<Dot, D>(n, L, tile, tok, y + t * ldy + i * kTileRows, ldy, int(rows), pf);
      }
    }
  }
}

template <class Dot>
void tiled(const TileLayout& L, const uint8_t* tiles, int64_t n_tiles, int64_t n_rows,
           const uint8_t* act, int n_tok, float* y, int64_t ldy) {
  constexpr bool kU = Dot::kUnsigned;
  switch (L.type) {
    case Type::Q4_0:
      return tiled_impl<Dot, DecQ4_0>(L, tiles, n_tiles, n_rows, act, n_tok, y, ldy);
    case Type::IQ4_NL:
      return tiled_impl<Dot, DecIQ4NL<kU>>(L, tiles, n_tiles, n_rows, act, n_tok, y, ldy);
    case Type::Q5_0:
      return tiled_impl<Dot, DecQ5<false>>(L, tiles, n_tiles, n_rows, act, n_tok, y, ldy);
    case Type::Q5_1:
      return tiled_impl<Dot, DecQ5<true>>(L, tiles, n_tiles, n_rows, act, n_tok, y, ldy);
    case Type::Q8_0:
      return tiled_impl<Dot, DecQ8_0<kU>>(L, tiles, n_tiles, n_rows, act, n_tok, y, ldy);
    case Type::IQ4_XS:
      return tiled_impl<Dot, DecIQ4XS<kU>>(L, tiles, n_tiles, n_rows, act, n_tok, y, ldy);
    case Type::Q4_K:
      return tiled_impl<Dot, DecQK<false>>(L, tiles, n_tiles, n_rows, act, n_tok, y, ldy);
    case Type::Q5_K:
      return tiled_impl<Dot, DecQK<true>>(L, tiles, n_tiles, n_rows, act, n_tok, y, ldy);
    case Type::Q6_K:
      return tiled_impl<Dot, DecQ6K>(L, tiles, n_tiles, n_rows, act, n_tok, y, ldy);
    default:
      break;
  }
}

template <class D>
constexpr ActParams act_params_of() {
  return {D::kOffset, D::kGroup == 16 ? 16 : 32, D::kSpan};
}

template <class Dot>
ActParams act_params(Type t) {
  constexpr bool kU = Dot::kUnsigned;
  switch (t) {
    case Type::Q4_0:
      return act_params_of<DecQ4_0>();
    case Type::IQ4_NL:
      return act_params_of<DecIQ4NL<kU>>();
    case Type::Q5_0:
      return act_params_of<DecQ5<false>>();
    case Type::Q5_1:
      return act_params_of<DecQ5<true>>();
    case Type::Q8_0:
      return act_params_of<DecQ8_0<kU>>();
    case Type::IQ4_XS:
      return act_params_of<DecIQ4XS<kU>>();
    case Type::Q4_K:
      return act_params_of<DecQK<false>>();
    case Type::Q5_K:
      return act_params_of<DecQK<true>>();
    case Type::Q6_K:
      return act_params_of<DecQ6K>();
    default:
      return {0, 32};
  }
}

// ---- activation quantization -------------------------------------------------------------------

void quantize_act(const float* x, int64_t n_in, ActParams p, void* out) {
  const ActOut o = act_out(out, act_layout(n_in));
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  auto block_max = [&](int64_t i) {
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j)
      m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 32 * i + 8 * j)));
    return avx2::hmax(m);
  };
  auto block_levels = [&](int64_t i, float amax) {
    const __m256 vid = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    __m256i qi[4];
    for (int j = 0; j < 4; ++j)
      qi[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * i + 8 * j), vid));
    const __m256i p16 =
        _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.q + 32 * i),
                        _mm256_permutevar8x32_epi32(p16, order));
    return HalfSums{avx2::hsum_epi32(_mm256_add_epi32(qi[0], qi[1])),
                    avx2::hsum_epi32(_mm256_add_epi32(qi[2], qi[3]))};
  };
  quantize_act_spans(n_in, p, o, block_max, block_levels);
}

// ---- float weights -----------------------------------------------------------------------------

// 8 consecutive weights of a group's line (8 rows at one k) as floats.
template <Type W>
inline __m256 load_w(const uint8_t* p) {
  if constexpr (W == Type::F32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (W == Type::F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// See matmul_avx512.cpp: outer products over [k0, k1) for V x 8 rows of a group's lines, starting
// at `group` (the first of those rows' weights at k = 0) and T tokens. With 16 ymm registers, V x
// T accumulators, V weight vectors and a broadcast: all 32 rows for 1-2 tokens (V = 4), or 16 rows
// (one half of the lines) for 3-6 tokens (V = 2, 12 accumulators).
template <Type W, int V, int T>
void group_kernel(const uint8_t* group, int64_t k0, int64_t k1, const float* x, int64_t ldx,
                  float* y, int64_t ldy, int n_rows, bool add) {
  constexpr size_t kElem = W == Type::F32 ? 4 : 2, kLine = size_t(kFloatRows) * kElem;
  __m256 acc[V][T];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v)
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) acc[v][t] = _mm256_setzero_ps();
  auto step = [&](int64_t k, const uint8_t* line) {
    __m256 w[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) w[v] = load_w<W>(line + v * 8 * kElem);
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) {
      const __m256 b = _mm256_broadcast_ss(x + t * ldx + k);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[v][t] = _mm256_fmadd_ps(w[v], b, acc[v][t]);
    }
  };
  for_group_lines<kLine>(group, k0, k1, step);
#pragma GCC unroll 6
  for (int t = 0; t < T; ++t) {
    float* yt = y + t * ldy;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const int n = std::min(8, n_rows - 8 * v);
      if (n <= 0) break;
      if (n == 8) {
        _mm256_storeu_ps(yt + 8 * v,
                         add ? _mm256_add_ps(acc[v][t], _mm256_loadu_ps(yt + 8 * v)) : acc[v][t]);
        continue;
      }
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, acc[v][t]);
      for (int i = 0; i < n; ++i) yt[8 * v + i] = (add ? yt[8 * v + i] : 0.0f) + tmp[i];
    }
  }
}

// One tile of n <= 6 tokens: whole lines for 1-2 tokens, else each half of the lines in turn.
template <Type W>
void group_tile(int n, const uint8_t* group, int64_t k0, int64_t k1, const float* x, int64_t ldx,
                float* y, int64_t ldy, int n_rows, bool add) {
  constexpr size_t kHalf = (W == Type::F32 ? 4 : 2) * size_t(kFloatRows) / 2;
  switch (n) {
    case 1:
      return group_kernel<W, 4, 1>(group, k0, k1, x, ldx, y, ldy, n_rows, add);
    case 2:
      return group_kernel<W, 4, 2>(group, k0, k1, x, ldx, y, ldy, n_rows, add);
    default:
      break;
  }
  for (int h = 0; h < 2 && 16 * h < n_rows; ++h) {
    const uint8_t* g = group + h * kHalf;
    float* yh = y + 16 * h;
    const int rows = std::min(16, n_rows - 16 * h);
    switch (n) {
      case 3:
        group_kernel<W, 2, 3>(g, k0, k1, x, ldx, yh, ldy, rows, add);
        break;
      case 4:
        group_kernel<W, 2, 4>(g, k0, k1, x, ldx, yh, ldy, rows, add);
        break;
      case 5:
        group_kernel<W, 2, 5>(g, k0, k1, x, ldx, yh, ldy, rows, add);
        break;
      default:
        group_kernel<W, 2, 6>(g, k0, k1, x, ldx, yh, ldy, rows, add);
        break;
    }
  }
}

template <Type W>
void rows_impl(const uint8_t* groups, int64_t n_in, int64_t n_rows, const float* x, int64_t ldx,
               int n_tok, float* y, int64_t ldy) {
  const size_t group_bytes = float_group_bytes(W, n_in);
  for_float_tiles<6>(n_in, n_rows, n_tok,
                     [&](int64_t g, int t, int n, int64_t k0, int64_t k1, int rows) {
                       group_tile<W>(n, groups + g * group_bytes, k0, k1, x + t * ldx, ldx,
                                     y + t * ldy + g * kFloatRows, ldy, rows, k0 > 0);
                     });
}

void rows(Type t, const uint8_t* groups, int64_t n_in, int64_t n_rows, const float* x, int64_t ldx,
          int n_tok, float* y, int64_t ldy) {
  switch (t) {
    case Type::F32:
      return rows_impl<Type::F32>(groups, n_in, n_rows, x, ldx, n_tok, y, ldy);
    case Type::F16:
      return rows_impl<Type::F16>(groups, n_in, n_rows, x, ldx, n_tok, y, ldy);
    case Type::BF16:
      return rows_impl<Type::BF16>(groups, n_in, n_rows, x, ldx, n_tok, y, ldy);
    default:
      break;
  }
}

}  // namespace

constinit const MatKernels kMatKernelsAvx2 = {Isa::Avx2, &act_params<Maddubs>, &quantize_act,
                                              &tiled<Maddubs>, &rows};
constinit const MatKernels kMatKernelsAvxVnni = {Isa::AvxVnni, &act_params<Vpdpbusd>, &quantize_act,
                                                 &tiled<Vpdpbusd>, &rows};

}  // namespace straw::cpu
