// What a quant format is to the rest of straw: a traits struct used as a template argument.
//
//   struct Q4K {
//     using Block = BlockQ4K;                    // the packed on-disk block (see q4_k.h)
//     static constexpr Type kType = Type::Q4_K;  // its ggml id
//     static constexpr int kBlockSize = 256;     // elements per block
//     static void dequantize(const Block& b, float* y);  // writes kBlockSize floats
//     static void quantize(const float* x, Block& b);    // only where the format has a quantizer
//   };
//
// Plain float types (F32, F16, BF16) are formats with a one-element block. Block structs are laid
// out with no padding by construction (every field is naturally aligned at its offset); each header
// static_asserts the size, and tests/quant_blocks_test.cpp checks every format against the type
// table in types.h. All multi-byte fields are little-endian, as on every target straw builds for.
//
// Code that needs a format from a runtime quant::Type goes through dispatch() in dispatch.h.
#pragma once

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "quant/f16.h"
#include "quant/types.h"

namespace straw::quant {

// 256: the super-block size of the K-quants, Q8_K and IQ4_XS.
inline constexpr int kSuperBlock = 256;

// Carries a format as a value, so that a generic lambda can receive it: dispatch() calls
// fn(FormatTag<F>{}), and the lambda recovers F as `typename decltype(tag)::type` or by writing
// `[&]<class F>(FormatTag<F>) { ... }`.
template <class F>
struct FormatTag {
  using type = F;
};

template <class F>
concept Format = requires(const typename F::Block& b, float* y) {
  requires std::is_trivially_copyable_v<typename F::Block>;
  requires std::is_standard_layout_v<typename F::Block>;
  { F::kType } -> std::convertible_to<Type>;
  { F::kBlockSize } -> std::convertible_to<int>;
  F::dequantize(b, y);
};

// True for formats that have a reference quantizer (F::quantize).
template <class F>
concept has_quantize = Format<F> && requires(const float* x, typename F::Block& b) {
  F::quantize(x, b);
};

// Dequantizes nblocks consecutive blocks into nblocks * F::kBlockSize floats.
template <Format F>
inline void dequantize_blocks(const typename F::Block* b, float* y, int64_t nblocks) {
  for (int64_t i = 0; i < nblocks; ++i) F::dequantize(b[i], y + i * F::kBlockSize);
}

// Quantizes nblocks * F::kBlockSize floats into nblocks consecutive blocks.
template <has_quantize F>
inline void quantize_blocks(const float* x, typename F::Block* b, int64_t nblocks) {
  for (int64_t i = 0; i < nblocks; ++i) F::quantize(x + i * F::kBlockSize, b[i]);
}

}  // namespace straw::quant
