// Half-precision conversions: IEEE binary16 ("fp16", the ggml_half of every quant block scale) and
// bfloat16 ("bf16", the upper 16 bits of a binary32) to and from float.
//
// Portable bit manipulation, no hardware half type and no dependence on the FP environment, so the
// results are the same on every compiler and in device code that includes this header.
//  - fp16 -> fp32 and bf16 -> fp32 are exact (every half value is a float).
//  - fp32 -> fp16 rounds to nearest, ties to even, including into and within the subnormal range;
//    values whose magnitude is at least 65520 (the midpoint between 65504, the largest half, and
//    65536) become infinity; NaN becomes the quiet NaN 0x7E00 with the input's sign. These are
//    the results of ggml's software converter for every one of the 2^32 inputs.
//  - fp32 -> bf16 rounds to nearest, ties to even (subnormals are rounded too, not flushed), and
//    NaN becomes a quiet NaN with the same sign and top payload bits, as ggml's converter does
//    (identical to it for all 2^32 inputs).
#pragma once

#include <bit>
#include <cstdint>

namespace straw::quant {

constexpr float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    // Inf or NaN: the payload moves to the top of the float mantissa.
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    // Normal: rebias the exponent from 15 to 127.
    bits = sign | ((exp + (127 - 15)) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    // Subnormal half (mant * 2^-24): normalise so the leading 1 becomes the implicit bit.
    int e = -1;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      ++e;
    }
    // The value is 1.m * 2^(-15 - e), i.e. biased float exponent 112 - e.
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

constexpr uint16_t fp32_to_fp16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;  // magnitude bits
  if (a >= 0x7f800000u) {
    return static_cast<uint16_t>(sign | (a == 0x7f800000u ? 0x7c00u : 0x7e00u));
  }
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520.0f rounds to infinity
  if (a < 0x38800000u) {
    // Below 2^-14, the smallest normal half: the result is round(|f| * 2^24) half-units of 2^-24.
    // |f| = mant * 2^(e - 150) with the implicit bit restored, so the shift is 126 - e.
    const uint32_t e = a >> 23;
    if (e < 102) return sign;  // below 2^-25 (or a float subnormal): rounds to zero
    const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t r = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u)))
      ++r;  // may carry into the smallest normal: correct
    return static_cast<uint16_t>(sign | r);
  }
  // Normal range: rebias the exponent and drop 13 mantissa bits with round-to-nearest-even. A carry
  // out of the mantissa correctly bumps the exponent (the overflow case was handled above).
  uint32_t h = (a >> 13) - ((127u - 15u) << 10);
  const uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

constexpr float bf16_to_fp32(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

constexpr uint16_t fp32_to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  // Adding 0x7fff plus the lowest kept bit rounds the dropped half to nearest, ties to even; a
  // carry into the exponent is right (it can turn the largest finite values into infinity).
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace straw::quant
