// The matrix-vector kernels, templated on the weight format and the token count; instantiated by
// matvec_int8_*.cu and matvec_float.cu (split so that the files compile in parallel).
//
// One warp per output row: lane l handles work units l, l + 32, ... of the row (a unit is 32 or 64
// weights, quant_decode.h), so a warp reads a contiguous run of blocks per step, and the weights of
// a unit are decoded once for all NT tokens. Rows go 4 to a block of 128 threads.
#pragma once

#include "cuda/common.cuh"
#include "util/str.h"

namespace straw::cuda {

inline constexpr int kMatvecWarps = 4;

template <quant::Type T, int NT>
__global__ void __launch_bounds__(kMatvecWarps * 32)
    k_matvec_int8(const uint8_t* __restrict__ w, size_t row_bytes, int n_units, int64_t n_out,
                  ActQ8 x, float* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kMatvecWarps + (threadIdx.x >> 5);
  if (row >= n_out) return;
  const uint8_t* r = w + row * row_bytes;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
#pragma unroll 2
  for (int u = lane; u < n_units; u += 32) QDec<T>::template dot_unit<NT>(r, u, x, acc);
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const float v = warp_sum(acc[t]);
    if (lane == 0) y[t * n_out + row] = v;
  }
}

// Float dot products: each lane dequantizes 8 weights at a time (16 bytes of F16 / BF16).
template <quant::Type T, int NT>
__global__ void __launch_bounds__(kMatvecWarps * 32)
    k_matvec_float(const uint8_t* __restrict__ w, size_t row_bytes, int n8, int64_t n_in,
                   int64_t n_out, const float* __restrict__ x, float* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kMatvecWarps + (threadIdx.x >> 5);
  if (row >= n_out) return;
  const uint8_t* r = w + row * row_bytes;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
#pragma unroll 2
  for (int j = lane; j < n8; j += 32) {
    float wv[8];
    QDec<T>::dequant8(r, j, wv);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float4* xp = reinterpret_cast<const float4*>(x + t * n_in + 8 * int64_t(j));
      const float4 a = xp[0], b = xp[1];
      acc[t] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w + wv[4] * b.x + wv[5] * b.y +
                wv[6] * b.z + wv[7] * b.w;
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const float v = warp_sum(acc[t]);
    if (lane == 0) y[t * n_out + row] = v;
  }
}

template <quant::Type T, int NT>
void launch_matvec_int8_nt(const MatvecArgs& a, const ActQ8& x, Stream stream) {
  const unsigned grid = unsigned(ceil_div(a.n_out, kMatvecWarps));
  k_matvec_int8<T, NT>
      <<<grid, kMatvecWarps * 32, 0, stream>>>(static_cast<const uint8_t*>(a.w), a.row_bytes,
                                               int(a.n_in / QDec<T>::kUnitElems), a.n_out, x, a.y);
  STRAW_CUDA_CHECK_LAUNCH();
}

template <quant::Type T>
void launch_matvec_int8(const MatvecArgs& a, const ActQ8& x, Stream stream) {
  switch (a.n_tokens) {
    case 1:
      return launch_matvec_int8_nt<T, 1>(a, x, stream);
    case 2:
      return launch_matvec_int8_nt<T, 2>(a, x, stream);
    case 3:
      return launch_matvec_int8_nt<T, 3>(a, x, stream);
    case 4:
      return launch_matvec_int8_nt<T, 4>(a, x, stream);
    case 5:
      return launch_matvec_int8_nt<T, 5>(a, x, stream);
    case 6:
      return launch_matvec_int8_nt<T, 6>(a, x, stream);
    case 7:
      return launch_matvec_int8_nt<T, 7>(a, x, stream);
    case 8:
      return launch_matvec_int8_nt<T, 8>(a, x, stream);
    default:
      fail("internal error: matvec for ", a.n_tokens, " tokens (1..8 supported)");
  }
}

template <quant::Type T, int NT>
void launch_matvec_float_nt(const MatvecArgs& a, const float* x, Stream stream) {
  const unsigned grid = unsigned(ceil_div(a.n_out, kMatvecWarps));
  k_matvec_float<T, NT><<<grid, kMatvecWarps * 32, 0, stream>>>(
      static_cast<const uint8_t*>(a.w), a.row_bytes, int(a.n_in / 8), a.n_in, a.n_out, x, a.y);
  STRAW_CUDA_CHECK_LAUNCH();
}

}  // namespace straw::cuda

namespace straw::cuda {

// Per-file dispatchers (matvec_int8_small.cu: 32-element block formats; matvec_int8_super.cu:
// 256-element super-block formats).
void matvec_int8_blocks32(const MatvecArgs& a, const ActQ8& x, Stream stream);
void matvec_int8_superblocks(const MatvecArgs& a, const ActQ8& x, Stream stream);

}  // namespace straw::cuda
