// Device helpers shared by the kernel files: warp / block reductions and launch arithmetic.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cuda_check.h"
#include "cuda/kernels.h"
#include "cuda/quant_decode.h"

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
