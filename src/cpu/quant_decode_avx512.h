// The AVX-512 decoders of the tiled quantized formats (tile layout: kernels.h), one struct per
// format, shared by the AVX-512 tile kernels (matmul_avx512.cpp) and the AMX ones (matmul_amx.cpp).
// Include only from files built with AVX-512 F / BW / VL / DQ / VNNI / VBMI.
//
// Each decoder turns a 64-byte chunk of a 16-row tile into 16 rows x 4 elements of levels, one row
// per 32-bit lane: the layout vpdpbusd multiplies, and the layout of an AMX B tile's row.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "cpu/kernels.h"
#include "quant/iq4_nl.h"

namespace straw::cpu::dec512 {

using quant::Type;

inline __m512 half16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m128i load16(const uint8_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}
inline __m256i load32(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline __m512i load64(const uint8_t* p) {
  return _mm512_loadu_si512(p);
}
inline __m512 u8_to_ps(__m128i v) {
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v));
}
inline __m512 s8_to_ps(__m128i v) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v));
}
inline __m512i nib_lo(__m512i v) {
  return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}
inline __m512i nib_hi(__m512i v) {
  return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F));
}

// The IQ4 levels plus 128 (so they are unsigned), repeated 4 times: a 64-entry vpermb table that
// looks up a byte's low nibble whatever its bits 4-5 hold (vpermb reads bits 0-5 of each index
// byte), so the nibbles need no masks. Built at compile time: built per tile call (64 scalar
// stores per 16 rows) it left the one-token IQ4_XS matvec at 9.9 us instead of 9.0.
struct IQ4Table64 {
  alignas(64) uint8_t t[64];
  constexpr IQ4Table64() : t{} {
    for (int i = 0; i < 64; ++i) t[i] = uint8_t(quant::kIQ4Values[i % 16] + 128);
  }
};
inline constexpr IQ4Table64 kIQ4Table64;
inline __m512i iq4_table() {
  return _mm512_load_si512(kIQ4Table64.t);
}

// The IQ4 levels of the low (w0) and high (w1) nibbles of v. The high nibbles are shifted down
// within 16-bit words, which puts the next byte's low nibble in bits 4-7: the table ignores it.
// One shift and two lookups, against two masks, a shift and two vpshufb: the matvec ceiling per
// core (BM_Matmul/IQ4_XS_matvec/1536/512/1/1) went from 10.0 to 9.0 us.
inline void iq4_levels(__m512i table, __m512i v, __m512i& w0, __m512i& w1) {
  w0 = _mm512_permutexvar_epi8(v, table);
  w1 = _mm512_permutexvar_epi8(_mm512_srli_epi16(v, 4), table);
}

// ---- decoders: one per format ----------------------------------------------------------------
// kBlock: elements per tile-block; kGroup: elements per scale; kOffset: u = level + kOffset;
// kSpan: elements per activation scale (act_params; 256 only where kBlock is 256);
// kMin: the format adds min(g) * sum(x) per group (only those call min). weights(g, p, w0, w1)
// gives the unsigned levels of elements 8p..8p+3 (w0) and 8p+4..8p+7 (w1) of group g; scale(g)
// the per-row scale.

struct DecQ4_0 {
  static constexpr int kBlock = 32, kGroup = 32, kOffset = 8, kSpan = 32;
  static constexpr bool kMin = false;
  const uint8_t* qs;
  __m512 d;
  void begin(const Planes& P) {
    qs = P.qs;
    d = half16(P.d);
  }
  __m512 scale(int) const { return d; }
  void weights(int, int p, __m512i& w0, __m512i& w1) const {
    const __m512i v = load64(qs + 64 * p);
    w0 = nib_lo(v);
    w1 = nib_hi(v);
  }
};

struct DecIQ4NL {
  static constexpr int kBlock = 32, kGroup = 32, kOffset = 128, kSpan = 32;
  static constexpr bool kMin = false;
  const uint8_t* qs;
  __m512 d;
  __m512i table = iq4_table();
  void begin(const Planes& P) {
    qs = P.qs;
    d = half16(P.d);
  }
  __m512 scale(int) const { return d; }
  void weights(int, int p, __m512i& w0, __m512i& w1) const {
    iq4_levels(table, load64(qs + 64 * p), w0, w1);
  }
};

// The fifth bit of elements 8p+j (bit p) and 8p+4+j (bit 4+p), moved to bit 4.
inline void bit5(__m512i h, int p, __m512i& b0, __m512i& b1) {
  const __m512i m = _mm512_set1_epi8(0x10);
  b0 = _mm512_and_si512(_mm512_sll_epi16(h, _mm_cvtsi32_si128(4 - p)), m);
  b1 = _mm512_and_si512(_mm512_srl_epi16(h, _mm_cvtsi32_si128(p)), m);
}

template <bool kWithMin>
struct DecQ5 {
  static constexpr int kBlock = 32, kGroup = 32, kOffset = kWithMin ? 0 : 16, kSpan = 32;
  static constexpr bool kMin = kWithMin;
  const uint8_t* qs;
  __m512i h;
  __m512 d, m;
  void begin(const Planes& P) {
    qs = P.qs;
    h = load64(P.qh);
    d = half16(P.d);
    if constexpr (kWithMin) m = half16(P.m);
  }
  __m512 scale(int) const { return d; }
  __m512 min(int) const { return m; }
  void weights(int, int p, __m512i& w0, __m512i& w1) const {
    const __m512i v = load64(qs + 64 * p);
    __m512i b0, b1;
    bit5(h, p, b0, b1);
    w0 = _mm512_or_si512(nib_lo(v), b0);
    w1 = _mm512_or_si512(nib_hi(v), b1);
  }
};

struct DecQ8_0 {
  static constexpr int kBlock = 32, kGroup = 32, kOffset = 128, kSpan = 32;
  static constexpr bool kMin = false;
  const uint8_t* qs;
  __m512 d;
  void begin(const Planes& P) {
    qs = P.qs;
    d = half16(P.d);
  }
  __m512 scale(int) const { return d; }
  void weights(int, int p, __m512i& w0, __m512i& w1) const {
    const __m512i flip = _mm512_set1_epi8(char(0x80));
    w0 = _mm512_xor_si512(load64(qs + 128 * p), flip);
    w1 = _mm512_xor_si512(load64(qs + 128 * p + 64), flip);
  }
};

struct DecIQ4XS {
  static constexpr int kBlock = 256, kGroup = 32, kOffset = 128, kSpan = 32;
  static constexpr bool kMin = false;
  const uint8_t* qs;
  __m512 d;
  __m512i table = iq4_table();
  // The 8 groups' multipliers ls - 32 of the 16 rows as int8, unpacked once per super-block:
  // group 2k at even[16k..16k+15], group 2k+1 at odd[16k..]. (Unpacking one group's at a time
  // took about a quarter of the 1-token kernel's instructions.)
  alignas(64) int8_t even[64], odd[64];
  // ls = low 4 bits (scales_l[g/2] nibble g%2) | high 2 bits (scales_h bits 2g..2g+1) << 4. The
  // plane: 4 x 16 bytes of nibble pairs (groups 2k, 2k+1 of each row), then 2 x 16 bytes of high
  // bits (groups 4j..4j+3 of each row).
  void begin(const Planes& P) {
    qs = P.qs;
    d = half16(P.d);
    const __m512i nib = _mm512_set1_epi8(0x0F), two = _mm512_set1_epi8(3);
    const __m512i lo = load64(P.sc);
    // 16-byte lane k of h: high-bit bytes k / 2, whose bits 4 (k % 2) .. 4 (k % 2) + 3 are those of
    // groups 2k and 2k + 1.
    const __m512i hs = _mm512_castsi256_si512(load32(P.sc + 64));
    const __m512i h = _mm512_shuffle_i64x2(hs, hs, 0x50);
    const __m512i shift = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);  // per lane k: 4 (k % 2)
    const __m512i he = _mm512_srlv_epi64(h, shift);                  // group 2k at bits 0-1
    const __m512i ho = _mm512_srli_epi64(he, 2);                     // group 2k+1 at bits 0-1
    // (low nibble | high bits << 4) - 32
    auto ls = [&](__m512i l, __m512i hb) {
      return _mm512_sub_epi8(_mm512_or_si512(_mm512_and_si512(l, nib),
                                             _mm512_slli_epi64(_mm512_and_si512(hb, two), 4)),
                             _mm512_set1_epi8(32));
    };
    _mm512_store_si512(even, ls(lo, he));
    _mm512_store_si512(odd, ls(_mm512_srli_epi64(lo, 4), ho));
  }
  __m512 scale(int g) const {
    const int8_t* m = (g % 2 ? odd : even) + 16 * (g / 2);
    return _mm512_mul_ps(d, s8_to_ps(load16(reinterpret_cast<const uint8_t*>(m))));
  }
  void weights(int g, int p, __m512i& w0, __m512i& w1) const {
    iq4_levels(table, load64(qs + 256 * g + 64 * p), w0, w1);
  }
};

template <bool kQ5>
struct DecQK {
  static constexpr int kBlock = 256, kGroup = 32, kOffset = 0, kSpan = 256;
  static constexpr bool kMin = true;
  const uint8_t* qs;
  const uint8_t* qh;
  __m512 d, negmin;
  // The 8 sub-blocks' 6-bit scales and mins of the 16 rows as bytes, unpacked once per
  // super-block: sub-block g's at sm[g][0..15] (scales) and sm[8 + g][0..15] (mins).
  alignas(64) uint8_t sm[16][16];
  // The plane: byte i of the 12-byte field for the 16 rows at 16 i. Bytes 0-3 / 4-7: scales /
  // mins 0-3 in bits 0-5, and in bits 6-7 the high bits of scales / mins 4-7; bytes 8-11: scales
  // 4-7 in bits 0-3, mins 4-7 in bits 4-7.
  void begin(const Planes& P) {
    qs = P.qs;
    qh = P.qh;
    d = half16(P.d);
    negmin = _mm512_sub_ps(_mm512_setzero_ps(), half16(P.m));
    const __m512i b03 = load64(P.sc), b47 = load64(P.sc + 64), b811 = load64(P.sc + 128);
    const __m512i six = _mm512_set1_epi8(63), nib = _mm512_set1_epi8(0x0F);
    const __m512i two = _mm512_set1_epi8(3);
    // (x >> 6) << 4 per byte: bits 6-7 to bits 4-5.
    auto high2 = [&](__m512i x) {
      return _mm512_slli_epi64(_mm512_and_si512(_mm512_srli_epi64(x, 6), two), 4);
    };
    _mm512_store_si512(sm[0], _mm512_and_si512(b03, six));
    _mm512_store_si512(sm[4], _mm512_or_si512(_mm512_and_si512(b811, nib), high2(b03)));
    _mm512_store_si512(sm[8], _mm512_and_si512(b47, six));
    _mm512_store_si512(
        sm[12], _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi64(b811, 4), nib), high2(b47)));
  }
  __m512 scale(int g) const { return _mm512_mul_ps(d, u8_to_ps(load16(sm[g]))); }
  __m512 min(int g) const { return _mm512_mul_ps(negmin, u8_to_ps(load16(sm[8 + g]))); }
  // The mins of groups g and g + 1 as an int16 pair per row lane (g in the low half).
  __m512i min_pair(int g) const {
    const __m512i lo = _mm512_cvtepu8_epi32(load16(sm[8 + g]));
    return _mm512_or_si512(lo, _mm512_slli_epi32(_mm512_cvtepu8_epi32(load16(sm[9 + g])), 16));
  }
  void weights(int g, int p, __m512i& w0, __m512i& w1) const {
    const __m512i v = load64(qs + 256 * g + 64 * p);
    w0 = nib_lo(v);
    w1 = nib_hi(v);
    if constexpr (kQ5) {
      __m512i b0, b1;
      bit5(load64(qh + 64 * g), p, b0, b1);
      w0 = _mm512_or_si512(w0, b0);
      w1 = _mm512_or_si512(w1, b1);
    }
  }
};

// Q6_K: groups of 16 (two per 32-element sub-block s = g / 2, chunks 2(g%2) + p).
struct DecQ6K {
  static constexpr int kBlock = 256, kGroup = 16, kOffset = 32, kSpan = 256;
  static constexpr bool kMin = false;
  const uint8_t* qs;
  const uint8_t* qh;
  const uint8_t* sc;
  __m512 d;
  void begin(const Planes& P) {
    qs = P.qs;
    qh = P.qh;
    sc = P.sc;
    d = half16(P.d);
  }
  __m512 scale(int g) const { return _mm512_mul_ps(d, s8_to_ps(load16(sc + 16 * g))); }
  void weights(int g, int p, __m512i& w0, __m512i& w1) const {
    const int s = g / 2, c = 2 * (g % 2) + p;
    const __m512i v = load64(qs + 256 * s + 64 * c);
    const __m512i h0 = load64(qh + 128 * s), h1 = load64(qh + 128 * s + 64);
    // Bits 2c..2c+1 of the high-bit bytes to bits 4..5.
    const __m128i sh = _mm_cvtsi32_si128(c < 3 ? 4 - 2 * c : 2);
    const __m512i m = _mm512_set1_epi8(0x30);
    __m512i b0, b1;
    if (c < 3) {
      b0 = _mm512_sll_epi16(h0, sh);
      b1 = _mm512_sll_epi16(h1, sh);
    } else {
      b0 = _mm512_srl_epi16(h0, sh);
      b1 = _mm512_srl_epi16(h1, sh);
    }
    w0 = _mm512_or_si512(nib_lo(v), _mm512_and_si512(b0, m));
    w1 = _mm512_or_si512(nib_hi(v), _mm512_and_si512(b1, m));
  }
};

// Decoders with kSpan 256 (Q4_K, Q5_K, Q6_K) get activations with one scale per 256 (act_params),
// so their group sums are scaled by the weights' group scale only, into a per-block sum, and the
// activation scale is applied once per block: one multiply per group and token less. Q6_K (16
// groups per block, in a loop above 4 tokens) keeps the per-group scaling at 6-8 tokens: with a
// third set of accumulators 8 tokens were not faster (-3 %); 5 tokens (a 1+4 verification) were
// (BM_Matmul 1536x512, 113-119 -> 128-130 GMAC/s per core). IQ4_XS
// keeps one activation scale per 32: with 256 a golden file's top-1 fell below the bar. T: tokens
// per tile of the AVX-512 kernels (matmul_avx512.cpp); the AMX kernels take the 8-token form.
template <class D, int T>
inline constexpr bool kBlockActScale = D::kSpan == 256 && (D::kGroup == 32 || T <= 5);

// The one dispatch from a tiled type to its decoder: calls f(std::type_identity<D>{}) with the
// decoder D of type t and returns true, or returns false for a type without one.
template <class F>
bool with_decoder(Type t, F&& f) {
  switch (t) {
    case Type::Q4_0:
      return f(std::type_identity<DecQ4_0>{}), true;
    case Type::IQ4_NL:
      return f(std::type_identity<DecIQ4NL>{}), true;
    case Type::Q5_0:
      return f(std::type_identity<DecQ5<false>>{}), true;
    case Type::Q5_1:
      return f(std::type_identity<DecQ5<true>>{}), true;
    case Type::Q8_0:
      return f(std::type_identity<DecQ8_0>{}), true;
    case Type::IQ4_XS:
      return f(std::type_identity<DecIQ4XS>{}), true;
    case Type::Q4_K:
      return f(std::type_identity<DecQK<false>>{}), true;
    case Type::Q5_K:
      return f(std::type_identity<DecQK<true>>{}), true;
    case Type::Q6_K:
      return f(std::type_identity<DecQ6K>{}), true;
    default:
      return false;
  }
}

}  // namespace straw::cpu::dec512
