// The plain float formats F32, F16 and BF16: one element per "block".
//
// F16 is IEEE binary16 and BF16 the upper half of a binary32; conversions are in f16.h (round to
// nearest even, NaN kept as NaN).
#pragma once

#include "quant/format.h"

namespace straw::quant {

struct BlockF32 {
  float value;
};
static_assert(sizeof(BlockF32) == 4);

struct BlockF16 {
  uint16_t bits;  // binary16
};
static_assert(sizeof(BlockF16) == 2);

struct BlockBF16 {
  uint16_t bits;  // upper 16 bits of a binary32
};
static_assert(sizeof(BlockBF16) == 2);

struct F32 {
  using Block = BlockF32;
  static constexpr Type kType = Type::F32;
  static constexpr int kBlockSize = 1;
  static void dequantize(const Block& b, float* y) { y[0] = b.value; }
  static void quantize(const float* x, Block& b) { b.value = x[0]; }
};

struct F16 {
  using Block = BlockF16;
  static constexpr Type kType = Type::F16;
  static constexpr int kBlockSize = 1;
  static void dequantize(const Block& b, float* y) { y[0] = fp16_to_fp32(b.bits); }
  static void quantize(const float* x, Block& b) { b.bits = fp32_to_fp16(x[0]); }
};

struct BF16 {
  using Block = BlockBF16;
  static constexpr Type kType = Type::BF16;
  static constexpr int kBlockSize = 1;
  static void dequantize(const Block& b, float* y) { y[0] = bf16_to_fp32(b.bits); }
  static void quantize(const float* x, Block& b) { b.bits = fp32_to_bf16(x[0]); }
};

}  // namespace straw::quant
