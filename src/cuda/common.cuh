// Shared by the kernel files: warp / block reductions, launch arithmetic, the 8-bit activation
// quantizer of one block, and the dispatch from a runtime format to a template argument.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/cuda_check.h"
#include "cuda/kernels.h"
#include "cuda/quant_decode.h"
#include "util/str.h"

namespace straw::cuda {

constexpr int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ int warp_sum_int(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float sigmoidf(float x) {
  return 1.0f / (1.0f + expf(-x));
}

// Quantizes block b (32 values) of the row x into qs (the row's levels) and ds (its block
// scales), one value per lane of the calling warp: d = max|x| / 127, q = round-to-nearest-even(x /
// d), s = d * sum(q) (ActQ8; mirrored on the host by tests/cuda_decode_test.cpp).
__device__ __forceinline__ void quantize_q8_block(const float* __restrict__ x, int b,
                                                  int8_t* __restrict__ qs, DS* __restrict__ ds) {
  const int lane = threadIdx.x & 31;
  const float v = x[b * 32 + lane];
  const float amax = warp_max(fabsf(v));
  const float d = amax / 127.0f;
  const float id = d > 0.0f ? 1.0f / d : 0.0f;
  const int q = __float2int_rn(v * id);
  qs[b * 32 + lane] = int8_t(q);
  const int sum = warp_sum_int(q);
  if (lane == 0) ds[b] = DS{d, d * float(sum)};
}

// The one place CUDA host code turns a runtime format into a template argument: calls
// fn(std::integral_constant<quant::Type, T>) for every cuda_supports() format; `what` completes
// the error for the others ("the CUDA backend cannot <what> <type> tensors").
template <class Fn>
void with_format(quant::Type t, const char* what, Fn&& fn) {
  using quant::Type;
  switch (t) {
    case Type::F32:
      return fn(std::integral_constant<Type, Type::F32>{});
    case Type::F16:
      return fn(std::integral_constant<Type, Type::F16>{});
    case Type::BF16:
      return fn(std::integral_constant<Type, Type::BF16>{});
    case Type::Q4_0:
      return fn(std::integral_constant<Type, Type::Q4_0>{});
    case Type::Q4_1:
      return fn(std::integral_constant<Type, Type::Q4_1>{});
    case Type::Q5_0:
      return fn(std::integral_constant<Type, Type::Q5_0>{});
    case Type::Q5_1:
      return fn(std::integral_constant<Type, Type::Q5_1>{});
    case Type::Q8_0:
      return fn(std::integral_constant<Type, Type::Q8_0>{});
    case Type::IQ4_NL:
      return fn(std::integral_constant<Type, Type::IQ4_NL>{});
    case Type::IQ4_XS:
      return fn(std::integral_constant<Type, Type::IQ4_XS>{});
    case Type::Q4_K:
      return fn(std::integral_constant<Type, Type::Q4_K>{});
    case Type::Q5_K:
      return fn(std::integral_constant<Type, Type::Q5_K>{});
    case Type::Q6_K:
      return fn(std::integral_constant<Type, Type::Q6_K>{});
    default:
      fail("the CUDA backend cannot ", what, " ", quant::type_name(t),
           " tensors (supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 IQ4_NL IQ4_XS Q4_K Q5_K "
           "Q6_K)");
  }
}

// Blocks of `threads` for a grid-stride loop over n > 0 elements (at most 65535: the loop covers
// the rest).
inline unsigned grid_stride_blocks(int64_t n, int threads) {
  return unsigned(n < int64_t(threads) * 65535 ? ceil_div(n, threads) : 65535);
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
// `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int n_warps = int(blockDim.x >> 5);
  v = lane < n_warps ? scratch[lane] : 0.0f;
  return warp_sum(v);
}

// The position of token 0 of an op: read from device memory inside a recorded step.
__device__ __forceinline__ int64_t step_pos(const StepPos& p) {
  return (p.dev ? int64_t(*p.dev) : 0) + p.add;
}

}  // namespace straw::cuda
