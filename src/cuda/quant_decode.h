// Block decoding of every quant format the CUDA backend multiplies, as __host__ __device__ code.
//
// The same functions run inside the kernels and, compiled by the host compiler, in the unit tests
// (tests/cuda_decode_test.cpp), which check them against the CPU reference on this machine even
// when no GPU is present. The header is C++17 (nvcc's default dialect) and needs no CUDA headers
// on the host; on the device it uses the dp4a / byte-permute / half intrinsics, and the host
// versions emulate them exactly.
//
// Two entry points per weight format, both on one row of blocks exactly as stored in the GGUF file
// (no repacking; pointers need only the alignment of the block struct, 2 bytes):
//  - dot_unit<NT>(row, u, x, acc): the int8 dot product of the weights of work unit u (elements
//    [u * kUnitElems, (u + 1) * kUnitElems)) with NT rows of 8-bit activations, added to acc[t].
//    A unit is what one thread reads per step: 32 elements for 32-element blocks, 64 elements (one
//    32-byte run of qs, both nibbles) for Q4_K / Q5_K / Q6_K, one sub-block of 32 for IQ4_XS.
//  - dequant8(row, j, out): the 8 floats of elements [8j, 8j + 8).
//
// Activations (ActQ8) are quantized per 32 consecutive values: qs[i] = round(x[i] / d) with
// d = max|x| / 127, and per block DS{d, s} with s = d * sum(qs), so that sum(x) over a block is s
// in the same rounding as the int dot products (the offset/min terms of Q4_0, Q4_1, Q5_*,
// K-quants).
#pragma once

#include <cstdint>
#include <cstring>

#include "quant/types.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define STRAW_HD __host__ __device__ __forceinline__
#define STRAW_UNROLL _Pragma("unroll")
#else
#define STRAW_HD inline
#define STRAW_UNROLL
#endif

namespace straw::cuda {

// ---- scalar helpers ----------------------------------------------------------------------------

STRAW_HD float half_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    int e = -1;  // normalise the subnormal so its leading 1 becomes the implicit bit
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      ++e;
    }
    bits = sign | (uint32_t(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

STRAW_HD float bf16_to_float(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

// Loads from weight blocks, which are only 2-byte aligned in general (18-, 22-, 34-, 210-byte
// blocks): 32-bit words are assembled from two 16-bit loads.
STRAW_HD uint16_t load_u16(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const uint16_t*>(p);
#else
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
#endif
}

STRAW_HD uint32_t load_u32_a2(const uint8_t* p) {
  return uint32_t(load_u16(p)) | uint32_t(load_u16(p + 2)) << 16;
}

// 32-bit loads where the format guarantees 4-byte alignment (Q4_K, Q5_K, Q5_1, IQ4_XS).
STRAW_HD uint32_t load_u32_a4(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const uint32_t*>(p);
#else
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
#endif
}

// 16 bytes as four words; p must be 16-byte aligned on the device (Q4_K, Q5_K qs and qh).
STRAW_HD void load_4x32_a16(const uint8_t* p, uint32_t* w) {
#if defined(__CUDA_ARCH__)
  const uint4 v = *reinterpret_cast<const uint4*>(p);
  w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
#else
  std::memcpy(w, p, 16);
#endif
}

// 32 activation levels as 8 words; p is 16-byte aligned (ActQ8 rows are 32-byte multiples).
STRAW_HD void load_x8(const int8_t* p, int* x) {
#if defined(__CUDA_ARCH__)
  const int4 a = reinterpret_cast<const int4*>(p)[0];
  const int4 b = reinterpret_cast<const int4*>(p)[1];
  x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
#else
  std::memcpy(x, p, 32);
#endif
}

// sum of the four signed byte products of a and b, plus c.
STRAW_HD int dp4a(int a, int b, int c) {
#if defined(__CUDA_ARCH__)
  return __dp4a(a, b, c);
#else
  STRAW_UNROLL
  for (int k = 0; k < 4; ++k)
    c += int(int8_t(uint32_t(a) >> (8 * k))) * int(int8_t(uint32_t(b) >> (8 * k)));
  return c;
#endif
}

// Byte k of the result is byte (s >> 4k) & 7 of the 8-byte value y:x (selectors 0..7 only).
STRAW_HD uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(x, y, s);
#else
  const uint64_t v = uint64_t(y) << 32 | x;
  uint32_t r = 0;
  STRAW_UNROLL
  for (int k = 0; k < 4; ++k) r |= uint32_t((v >> (8 * ((s >> (4 * k)) & 7))) & 0xff) << (8 * k);
  return r;
#endif
}

// ---- 8-bit activations
// ---------------------------------------------------------------------------

struct DS {
  float d;  // scale: x ~= d * q
  float s;  // d * sum(q) over the 32 values
};

// NT rows of activations quantized per 32 values: row t has `stride` levels at qs + t * stride and
// stride / 32 scale pairs at ds + t * (stride / 32). stride is a multiple of 32.
struct ActQ8 {
  const int8_t* qs;
  const DS* ds;
  int64_t stride;
};

// ---- 4-bit tables
// ----------------------------------------------------------------------------------

// The IQ4_NL / IQ4_XS levels (quant/iq4_nl.h, kIQ4Values) packed four to a word, for byte_perm.
constexpr uint32_t pack4(int a, int b, int c, int d) {
  return uint32_t(uint8_t(a)) | uint32_t(uint8_t(b)) << 8 | uint32_t(uint8_t(c)) << 16 |
         uint32_t(uint8_t(d)) << 24;
}
inline constexpr uint32_t kIQ4Word0 = pack4(-127, -104, -83, -65);
inline constexpr uint32_t kIQ4Word1 = pack4(-49, -35, -22, -10);
inline constexpr uint32_t kIQ4Word2 = pack4(1, 13, 25, 38);
inline constexpr uint32_t kIQ4Word3 = pack4(53, 69, 89, 113);

// Four 4-bit indices (one per byte, values 0..15) -> the four signed table levels.
STRAW_HD uint32_t iq4_lookup(uint32_t idx) {
  const uint32_t t = idx & 0x07070707u;
  const uint32_t sel = (t & 7u) | ((t >> 4) & 0x70u) | ((t >> 8) & 0x700u) | ((t >> 12) & 0x7000u);
  const uint32_t lo = byte_perm(kIQ4Word0, kIQ4Word1, sel);
  const uint32_t hi = byte_perm(kIQ4Word2, kIQ4Word3, sel);
  const uint32_t mask = ((idx >> 3) & 0x01010101u) * 0xffu;  // 0xff in bytes whose index is >= 8
  return (hi & mask) | (lo & ~mask);
}

STRAW_HD int iq4_level(int idx) {
  const uint32_t w = idx < 4 ? kIQ4Word0 : idx < 8 ? kIQ4Word1 : idx < 12 ? kIQ4Word2 : kIQ4Word3;
  return int(int8_t(uint8_t(w >> (8 * (idx & 3)))));
}

// The fifth bits b0..b3 (bits 0..3 of `bits`) moved to bit 4 of bytes 0..3.
STRAW_HD uint32_t spread_bit4(uint32_t bits) {
  return ((bits & 1u) << 4) | ((bits & 2u) << 11) | ((bits & 4u) << 18) | ((bits & 8u) << 25);
}

// Bytes holding 6-bit levels 0..63 -> the signed bytes level - 32.
STRAW_HD uint32_t minus32_6bit(uint32_t w) {
  uint32_t r = w ^ 0x20202020u;        // level - 32 in 6-bit two's complement
  const uint32_t s = r & 0x20202020u;  // its sign bit
  return r | (s << 1) | (s << 2);      // sign-extended to 8 bits
}

// The 6-bit scale and min of sub-block s of a Q4_K / Q5_K block (quant/q4_k.h, kquant_scale_min).
STRAW_HD void kquant_scale_min(const uint8_t* sc, int s, int& scale, int& min) {
  if (s < 4) {
    scale = sc[s] & 63;
    min = sc[s + 4] & 63;
  } else {
    scale = (sc[s + 4] & 0xF) | (sc[s - 4] >> 6) << 4;
    min = (sc[s + 4] >> 4) | (sc[s] >> 6) << 4;
  }
}

// ---- per-format decoding
// ---------------------------------------------------------------------------

template <quant::Type T>
struct QDec;

// Shared by the 32-element formats whose levels are nibbles (byte j: element j low, j + 16 high).
// Loads the 16 nibble bytes as words: lo[i] = elements 4i..4i+3, hi[i] = elements 16+4i..16+4i+3.
STRAW_HD void nibbles16(const uint8_t* qs, uint32_t* lo, uint32_t* hi) {
  STRAW_UNROLL
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = load_u32_a2(qs + 4 * i);
    lo[i] = v & 0x0F0F0F0Fu;
    hi[i] = (v >> 4) & 0x0F0F0F0Fu;
  }
}

template <int NT>
STRAW_HD void dot32_accumulate(const uint32_t* lo, const uint32_t* hi, const ActQ8& x, int64_t blk,
                               float wd, float wsum_coef, float (&acc)[NT]) {
  // acc[t] += wd * d_x * sum(q_w * q_x) + wsum_coef * s_x
  STRAW_UNROLL
  for (int t = 0; t < NT; ++t) {
    int xi[8];
    load_x8(x.qs + t * x.stride + blk * 32, xi);
    int sumi = 0;
    STRAW_UNROLL
    for (int i = 0; i < 4; ++i) sumi = dp4a(int(lo[i]), xi[i], sumi);
    STRAW_UNROLL
    for (int i = 0; i < 4; ++i) sumi = dp4a(int(hi[i]), xi[4 + i], sumi);
    const DS ds = x.ds[t * (x.stride / 32) + blk];
    acc[t] += wd * ds.d * float(sumi) + wsum_coef * ds.s;
  }
}

template <>
struct QDec<quant::Type::Q4_0> {
  static constexpr int kBlockElems = 32, kBlockBytes = 18, kUnitElems = 32;
  template <int NT>
  STRAW_HD static void dot_unit(const uint8_t* row, int64_t u, const ActQ8& x, float (&acc)[NT]) {
    const uint8_t* b = row + u * kBlockBytes;
    uint32_t lo[4], hi[4];
    nibbles16(b + 2, lo, hi);
    const float d = half_to_float(load_u16(b));
    dot32_accumulate<NT>(lo, hi, x, u, d, -8.0f * d, acc);  // d * (q - 8)
  }
  STRAW_HD static void dequant8(const uint8_t* row, int64_t j, float* out) {
    const uint8_t* b = row + (j / 4) * kBlockBytes;
    const int e0 = int(j % 4) * 8;
    const float d = half_to_float(load_u16(b));
    const uint8_t* q = b + 2 + (e0 & 15);
    const int shift = e0 >= 16 ? 4 : 0;
    STRAW_UNROLL
    for (int k = 0; k < 8; ++k) out[k] = float(((q[k] >> shift) & 0xF) - 8) * d;
  }
};

template <>
struct QDec<quant::Type::Q4_1> {
  static constexpr int kBlockElems = 32, kBlockBytes = 20, kUnitElems = 32;
  template <int NT>
  STRAW_HD static void dot_unit(const uint8_t* row, int64_t u, const ActQ8& x, float (&acc)[NT]) {
    const uint8_t* b = row + u * kBlockBytes;
    uint32_t lo[4], hi[4];
    nibbles16(b + 4, lo, hi);
    dot32_accumulate<NT>(lo, hi, x, u, half_to_float(load_u16(b)), half_to_float(load_u16(b + 2)),
                         acc);  // d * q + m
  }
  STRAW_HD static void dequant8(const uint8_t* row, int64_t j, float* out) {
    const uint8_t* b = row + (j / 4) * kBlockBytes;
    const int e0 = int(j % 4) * 8;
    const float d = half_to_float(load_u16(b)), m = half_to_float(load_u16(b + 2));
    const uint8_t* q = b + 4 + (e0 & 15);
    const int shift = e0 >= 16 ? 4 : 0;
    STRAW_UNROLL
    for (int k = 0; k < 8; ++k) out[k] = float((q[k] >> shift) & 0xF) * d + m;
  }
};

// Q5_0 / Q5_1 share the level layout: qh (32 fifth bits) then the Q4_0 nibbles.
STRAW_HD void q5_levels(const uint8_t* qh_p, const uint8_t* qs, uint32_t* lo, uint32_t* hi) {
  const uint32_t qh = load_u32_a2(qh_p);
  nibbles16(qs, lo, hi);
  STRAW_UNROLL
  for (int i = 0; i < 4; ++i) {
    lo[i] |= spread_bit4((qh >> (4 * i)) & 0xF);
    hi[i] |= spread_bit4((qh >> (16 + 4 * i)) & 0xF);
  }
}

STRAW_HD void q5_dequant8(const uint8_t* qh_p, const uint8_t* qs, int e0, float d, float m,
                          float* out) {
  const uint32_t qh = load_u32_a2(qh_p);
  const uint8_t* q = qs + (e0 & 15);
  const int shift = e0 >= 16 ? 4 : 0;
  STRAW_UNROLL
  for (int k = 0; k < 8; ++k) {
    const int level = ((q[k] >> shift) & 0xF) | int((qh >> (e0 + k)) & 1u) << 4;
    out[k] = float(level) * d + m;
  }
}

template <>
struct QDec<quant::Type::Q5_0> {
  static constexpr int kBlockElems = 32, kBlockBytes = 22, kUnitElems = 32;
  template <int NT>
  STRAW_HD static void dot_unit(const uint8_t* row, int64_t u, const ActQ8& x, float (&acc)[NT]) {
    const uint8_t* b = row + u * kBlockBytes;
    uint32_t lo[4], hi[4];
    q5_levels(b + 2, b + 6, lo, hi);
    const float d = half_to_float(load_u16(b));
    dot32_accumulate<NT>(lo, hi, x, u, d, -16.0f * d, acc);  // d * (q - 16)
  }
  STRAW_HD static void dequant8(const uint8_t* row, int64_t j, float* out) {
    const uint8_t* b = row + (j / 4) * kBlockBytes;
    const float d = half_to_float(load_u16(b));
    q5_dequant8(b + 2, b + 6, int(j % 4) * 8, d, -16.0f * d, out);
  }
};

template <>
struct QDec<quant::Type::Q5_1> {
  static constexpr int kBlockElems = 32, kBlockBytes = 24, kUnitElems = 32;
  template <int NT>
  STRAW_HD static void dot_unit(const uint8_t* row, int64_t u, const ActQ8& x, float (&acc)[NT]) {
    const uint8_t* b = row + u * kBlockBytes;
    uint32_t lo[4], hi[4];
    q5_levels(b + 4, b + 8, lo, hi);
    dot32_accumulate<NT>(lo, hi, x, u, half_to_float(load_u16(b)), half_to_float(load_u16(b + 2)),
                         acc);
  }
  STRAW_HD static void dequant8(const uint8_t* row, int64_t j, float* out) {
    const uint8_t* b = row + (j / 4) * kBlockBytes;
    q5_dequant8(b + 4, b + 8, int(j % 4) * 8, half_to_float(load_u16(b)),
                half_to_float(load_u16(b + 2)), out);
  }
};

template <>
struct QDec<quant::Type::Q8_0> {
  static constexpr int kBlockElems = 32, kBlockBytes = 34, kUnitElems = 32;
  template <int NT>
  STRAW_HD static void dot_unit(const uint8_t* row, int64_t u, const ActQ8& x, float (&acc)[NT]) {
    const uint8_t* b = row + u * kBlockBytes;
    int w[8];
    STRAW_UNROLL
    for (int i = 0; i < 8; ++i) w[i] = int(load_u32_a2(b + 2 + 4 * i));
    const float d = half_to_float(load_u16(b));
    STRAW_UNROLL
    for (int t = 0; t < NT; ++t) {
      int xi[8];
      load_x8(x.qs + t * x.stride + u * 32, xi);
      int sumi = 0;
      STRAW_UNROLL
      for (int i = 0; i < 8; ++i) sumi = dp4a(w[i], xi[i], sumi);
      acc[t] += d * x.ds[t * (x.stride / 32) + u].d * float(sumi);
    }
  }
  STRAW_HD static void dequant8(const uint8_t* row, int64_t j, float* out) {
    const uint8_t* b = row + (j / 4) * kBlockBytes;
    const float d = half_to_float(load_u16(b));
    const int8_t* q = reinterpret_cast<const int8_t*>(b + 2) + int(j % 4) * 8;
    STRAW_UNROLL
    for (int k = 0; k < 8; ++k) out[k] = float(q[k]) * d;
  }
};

template <>
struct QDec<quant::Type::IQ4_NL> {
  static constexpr int kBlockElems = 32, kBlockBytes = 18, kUnitElems = 32;
  template <int NT>
  STRAW_HD static void dot_unit(const uint8_t* row, int64_t u, const ActQ8& x, float (&acc)[NT]) {
    const uint8_t* b = row + u * kBlockBytes;
    uint32_t lo[4], hi[4];
    nibbles16(b + 2, lo, hi);
    STRAW_UNROLL
    for (int i = 0; i < 4; ++i) lo[i] = iq4_lookup(lo[i]), hi[i] = iq4_lookup(hi[i]);
    dot32_accumulate<NT>(lo, hi, x, u, half_to_float(load_u16(b)), 0.0f, acc);
  }
  STRAW_HD static void dequant8(const uint8_t* row, int64_t j, float* out) {
    const uint8_t* b = row + (j / 4) * kBlockBytes;
    const int e0 = int(j % 4) * 8;
    const float d = half_to_float(load_u16(b));
    const uint8_t* q = b + 2 + (e0 & 15);
    const int shift = e0 >= 16 ? 4 : 0;
    STRAW_UNROLL
    for (int k = 0; k < 8; ++k) out[k] = d * float(iq4_level((q[k] >> shift) & 0xF));
  }
};

// IQ4_XS: d (fp16) | scales_h (u16) | scales_l[4] | qs[128]; 136-byte blocks, 8-byte aligned.
template <>
struct QDec<quant::Type::IQ4_XS> {
  static constexpr int kBlockElems = 256, kBlockBytes = 136, kUnitElems = 32;
  STRAW_HD static float sub_scale(const uint8_t* b, int s) {
    const int ls = ((b[4 + s / 2] >> (4 * (s % 2))) & 0xF) | ((load_u16(b + 2) >> (2 * s)) & 3)
                                                                 << 4;
    return half_to_float(load_u16(b)) * float(ls - 32);
  }
  template <int NT>
  STRAW_HD static void dot_unit(const uint8_t* row, int64_t u, const ActQ8& x, float (&acc)[NT]) {
    const uint8_t* b = row + (u / 8) * kBlockBytes;
    const int s = int(u % 8);
    const uint8_t* qs = b + 8 + 16 * s;
    uint32_t lo[4], hi[4];
    STRAW_UNROLL
    for (int i = 0; i < 4; ++i) {
      const uint32_t v = load_u32_a4(qs + 4 * i);
      lo[i] = iq4_lookup(v & 0x0F0F0F0Fu);
      hi[i] = iq4_lookup((v >> 4) & 0x0F0F0F0Fu);
    }
    dot32_accumulate<NT>(lo, hi, x, u, sub_scale(b, s), 0.0f, acc);
  }
  STRAW_HD static void dequant8(const uint8_t* row, int64_t j, float* out) {
    const uint8_t* b = row + (j / 32) * kBlockBytes;
    const int e = int(j % 32) * 8;  // element within the block
    const int s = e / 32, e0 = e % 32;
    const float dl = sub_scale(b, s);
    const uint8_t* q = b + 8 + 16 * s + (e0 & 15);
    const int shift = e0 >= 16 ? 4 : 0;
    STRAW_UNROLL
    for (int k = 0; k < 8; ++k) out[k] = dl * float(iq4_level((q[k] >> shift) & 0xF));
  }
};

// Q4_K / Q5_K: unit u = 64 elements (chunk c = u % 4 of block u / 4): sub-blocks 2c (low nibbles
// of qs[32c .. 32c + 31]) and 2c + 1 (high nibbles).
template <int NT>
STRAW_HD void kquant_pair_accumulate(const uint8_t* b, int c, const uint32_t* lo,
                                     const uint32_t* hi, const ActQ8& x, int64_t u,
                                     float (&acc)[NT]) {
  const float d = half_to_float(load_u16(b)), dmin = half_to_float(load_u16(b + 2));
  int sc_lo, m_lo, sc_hi, m_hi;
  kquant_scale_min(b + 4, 2 * c, sc_lo, m_lo);
  kquant_scale_min(b + 4, 2 * c + 1, sc_hi, m_hi);
  const float d_lo = d * float(sc_lo), d_hi = d * float(sc_hi);
  const float mn_lo = dmin * float(m_lo), mn_hi = dmin * float(m_hi);
  STRAW_UNROLL
  for (int t = 0; t < NT; ++t) {
    const int8_t* xq = x.qs + t * x.stride + u * 64;
    const DS* ds = x.ds + t * (x.stride / 32) + 2 * u;
    int xa[8], xb[8];
    load_x8(xq, xa);
    load_x8(xq + 32, xb);
    int sa = 0, sb = 0;
    STRAW_UNROLL
    for (int i = 0; i < 8; ++i) sa = dp4a(int(lo[i]), xa[i], sa);
    STRAW_UNROLL
    for (int i = 0; i < 8; ++i) sb = dp4a(int(hi[i]), xb[i], sb);
    const DS da = ds[0], db = ds[1];
    acc[t] += d_lo * da.d * float(sa) - mn_lo * da.s + d_hi * db.d * float(sb) - mn_hi * db.s;
  }
}

template <>
struct QDec<quant::Type::Q4_K> {
  static constexpr int kBlockElems = 256, kBlockBytes = 144, kUnitElems = 64;
  template <int NT>
  STRAW_HD static void dot_unit(const uint8_t* row, int64_t u, const ActQ8& x, float (&acc)[NT]) {
    const uint8_t* b = row + (u / 4) * kBlockBytes;
    const int c = int(u % 4);
    uint32_t v[8], lo[8], hi[8];
    load_4x32_a16(b + 16 + 32 * c, v);
    load_4x32_a16(b + 32 + 32 * c, v + 4);
    STRAW_UNROLL
    for (int i = 0; i < 8; ++i) lo[i] = v[i] & 0x0F0F0F0Fu, hi[i] = (v[i] >> 4) & 0x0F0F0F0Fu;
    kquant_pair_accumulate<NT>(b, c, lo, hi, x, u, acc);
  }
  STRAW_HD static void dequant8(const uint8_t* row, int64_t j, float* out) {
    const uint8_t* b = row + (j / 32) * kBlockBytes;
    const int e = int(j % 32) * 8;
    const int c = e / 64, l0 = e % 64;
    const int s = 2 * c + (l0 >= 32 ? 1 : 0);
    int sc, m;
    kquant_scale_min(b + 4, s, sc, m);
    const float dl = half_to_float(load_u16(b)) * float(sc);
    const float ml = half_to_float(load_u16(b + 2)) * float(m);
    const uint8_t* q = b + 16 + 32 * c + (l0 & 31);
    const int shift = l0 >= 32 ? 4 : 0;
    STRAW_UNROLL
    for (int k = 0; k < 8; ++k) out[k] = dl * float((q[k] >> shift) & 0xF) - ml;
  }
};

// Q5_K: d | dmin | scales[12] | qh[32] (offset 16) | qs[128] (offset 48); 176-byte blocks.
template <>
struct QDec<quant::Type::Q5_K> {
  static constexpr int kBlockElems = 256, kBlockBytes = 176, kUnitElems = 64;
  template <int NT>
  STRAW_HD static void dot_unit(const uint8_t* row, int64_t u, const ActQ8& x, float (&acc)[NT]) {
    const uint8_t* b = row + (u / 4) * kBlockBytes;
    const int c = int(u % 4);
    uint32_t v[8], h[8], lo[8], hi[8];
    load_4x32_a16(b + 48 + 32 * c, v);
    load_4x32_a16(b + 64 + 32 * c, v + 4);
    load_4x32_a16(b + 16, h);
    load_4x32_a16(b + 32, h + 4);
    STRAW_UNROLL
    for (int i = 0; i < 8; ++i) {
      lo[i] = (v[i] & 0x0F0F0F0Fu) | ((h[i] >> (2 * c)) & 0x01010101u) << 4;
      hi[i] = ((v[i] >> 4) & 0x0F0F0F0Fu) | ((h[i] >> (2 * c + 1)) & 0x01010101u) << 4;
    }
    kquant_pair_accumulate<NT>(b, c, lo, hi, x, u, acc);
  }
  STRAW_HD static void dequant8(const uint8_t* row, int64_t j, float* out) {
    const uint8_t* b = row + (j / 32) * kBlockBytes;
    const int e = int(j % 32) * 8;
    const int c = e / 64, l0 = e % 64;
    const int hib = l0 >= 32 ? 1 : 0;
    int sc, m;
    kquant_scale_min(b + 4, 2 * c + hib, sc, m);
    const float dl = half_to_float(load_u16(b)) * float(sc);
    const float ml = half_to_float(load_u16(b + 2)) * float(m);
    const int l = l0 & 31;
    const uint8_t* q = b + 48 + 32 * c + l;
    const uint8_t* qh = b + 16 + l;
    STRAW_UNROLL
    for (int k = 0; k < 8; ++k) {
      const int level = ((q[k] >> (4 * hib)) & 0xF) | ((qh[k] >> (2 * c + hib)) & 1) << 4;
      out[k] = dl * float(level) - ml;
    }
  }
};

// Q6_K: ql[128] | qh[64] (offset 128) | scales[16] (int8, offset 192) | d (offset 208). Unit u = 64
// elements: half h = (u % 4) / 2, p = u % 2: groups of 32 k = p (low nibbles of ql[64h + 32p ..])
// and k = p + 2 (high nibbles), fifth/sixth bits from qh[32h ..] at shifts 2k.
template <>
struct QDec<quant::Type::Q6_K> {
  static constexpr int kBlockElems = 256, kBlockBytes = 210, kUnitElems = 64;
  template <int NT>
  STRAW_HD static void dot_unit(const uint8_t* row, int64_t u, const ActQ8& x, float (&acc)[NT]) {
    const uint8_t* b = row + (u / 4) * kBlockBytes;
    const int h = int(u % 4) / 2, p = int(u % 2);
    uint32_t wa[8], wb[8];  // k = p and k = p + 2, signed levels
    STRAW_UNROLL
    for (int i = 0; i < 8; ++i) {
      const uint32_t ql = load_u32_a2(b + 64 * h + 32 * p + 4 * i);
      const uint32_t qh = load_u32_a2(b + 128 + 32 * h + 4 * i);
      wa[i] = minus32_6bit((ql & 0x0F0F0F0Fu) | ((qh >> (2 * p)) & 0x03030303u) << 4);
      wb[i] = minus32_6bit(((ql >> 4) & 0x0F0F0F0Fu) | ((qh >> (2 * p + 4)) & 0x03030303u) << 4);
    }
    const float d = half_to_float(load_u16(b + 208));
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * h;
    const float da0 = d * float(sc[2 * p]), da1 = d * float(sc[2 * p + 1]);
    const float db0 = d * float(sc[2 * p + 4]), db1 = d * float(sc[2 * p + 5]);
    // Element offsets within the row: group k starts at 256 * (u / 4) + 128h + 32k.
    const int64_t ea = (u / 4) * 256 + 128 * h + 32 * p, eb = ea + 64;
    STRAW_UNROLL
    for (int t = 0; t < NT; ++t) {
      int xa[8], xb[8];
      load_x8(x.qs + t * x.stride + ea, xa);
      load_x8(x.qs + t * x.stride + eb, xb);
      int sa0 = 0, sa1 = 0, sb0 = 0, sb1 = 0;
      STRAW_UNROLL
      for (int i = 0; i < 4; ++i) {
        sa0 = dp4a(int(wa[i]), xa[i], sa0);
        sa1 = dp4a(int(wa[4 + i]), xa[4 + i], sa1);
        sb0 = dp4a(int(wb[i]), xb[i], sb0);
        sb1 = dp4a(int(wb[4 + i]), xb[4 + i], sb1);
      }
      const DS* ds = x.ds + t * (x.stride / 32);
      acc[t] += ds[ea / 32].d * (da0 * float(sa0) + da1 * float(sa1)) +
                ds[eb / 32].d * (db0 * float(sb0) + db1 * float(sb1));
    }
  }
  STRAW_HD static void dequant8(const uint8_t* row, int64_t j, float* out) {
    const uint8_t* b = row + (j / 32) * kBlockBytes;
    const int e = int(j % 32) * 8;
    const int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    const float dl = half_to_float(load_u16(b + 208)) * float(int8_t(b[192 + e / 16]));
    const uint8_t* ql = b + 64 * h + 32 * (k & 1) + l;
    const uint8_t* qh = b + 128 + 32 * h + l;
    STRAW_UNROLL
    for (int i = 0; i < 8; ++i) {
      const int level = ((ql[i] >> (4 * (k >> 1))) & 0xF) | ((qh[i] >> (2 * k)) & 3) << 4;
      out[i] = dl * float(level - 32);
    }
  }
};

// Plain float formats: dequant8 only (their matvec multiplies floats directly). Rows of F16 / BF16
// / F32 weights must start 16-byte aligned and n_in be a multiple of 8 (checked by the launchers).
template <>
struct QDec<quant::Type::F32> {
  static constexpr int kBlockElems = 1, kBlockBytes = 4, kUnitElems = 8;
  STRAW_HD static void dequant8(const uint8_t* row, int64_t j, float* out) {
#if defined(__CUDA_ARCH__)
    const float4* p = reinterpret_cast<const float4*>(row) + 2 * j;
    const float4 a = p[0], c = p[1];
    out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w;
    out[4] = c.x, out[5] = c.y, out[6] = c.z, out[7] = c.w;
#else
    std::memcpy(out, row + 32 * j, 32);
#endif
  }
};

template <>
struct QDec<quant::Type::F16> {
  static constexpr int kBlockElems = 1, kBlockBytes = 2, kUnitElems = 8;
  STRAW_HD static void dequant8(const uint8_t* row, int64_t j, float* out) {
    uint32_t w[4];
    load_4x32_a16(row + 16 * j, w);
    STRAW_UNROLL
    for (int k = 0; k < 8; ++k) out[k] = half_to_float(uint16_t(w[k / 2] >> (16 * (k % 2))));
  }
};

template <>
struct QDec<quant::Type::BF16> {
  static constexpr int kBlockElems = 1, kBlockBytes = 2, kUnitElems = 8;
  STRAW_HD static void dequant8(const uint8_t* row, int64_t j, float* out) {
    uint32_t w[4];
    load_4x32_a16(row + 16 * j, w);
    STRAW_UNROLL
    for (int k = 0; k < 8; ++k) out[k] = bf16_to_float(uint16_t(w[k / 2] >> (16 * (k % 2))));
  }
};

// Formats multiplied with 8-bit activations (dp4a); F16 / BF16 / F32 use float dot products.
constexpr bool is_int8_format(quant::Type t) {
  switch (t) {
    case quant::Type::Q4_0:
    case quant::Type::Q4_1:
    case quant::Type::Q5_0:
    case quant::Type::Q5_1:
    case quant::Type::Q8_0:
    case quant::Type::IQ4_NL:
    case quant::Type::IQ4_XS:
    case quant::Type::Q4_K:
    case quant::Type::Q5_K:
    case quant::Type::Q6_K:
      return true;
    default:
      return false;
  }
}

constexpr bool is_float_format(quant::Type t) {
  return t == quant::Type::F32 || t == quant::Type::F16 || t == quant::Type::BF16;
}

// Every format the CUDA backend multiplies, gets rows of, and dequantizes.
constexpr bool cuda_supports(quant::Type t) {
  return is_int8_format(t) || is_float_format(t);
}

}  // namespace straw::cuda
