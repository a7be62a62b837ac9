// Conversions: weights to binary16 for cuBLAS, activations to binary16, embedding rows, and the
// plain copy kernel that measures the device's bandwidth.
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>

#include "cuda/common.cuh"
#include "util/str.h"

namespace straw::cuda {

namespace {

__device__ __forceinline__ uint32_t pack_half2(float a, float b) {
  const __half2 h = __floats2half2_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// One thread per 8 weights: dequantize and store 16 bytes of binary16.
template <quant::Type T>
__global__ void k_dequantize_f16(const uint8_t* __restrict__ w, size_t row_bytes, int n8,
                                 int64_t total8, uint4* __restrict__ out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total8) return;
  const int64_t row = i / n8;
  const int j = int(i % n8);
  float v[8];
  QDec<T>::dequant8(w + row * row_bytes, j, v);
  out[i] = make_uint4(pack_half2(v[0], v[1]), pack_half2(v[2], v[3]), pack_half2(v[4], v[5]),
                      pack_half2(v[6], v[7]));
}

// Rows of the table picked by ids: block (token, chunk of 8 * 128 values).
template <quant::Type T>
__global__ void k_get_rows(const uint8_t* __restrict__ table, size_t row_bytes, int n8,
                           const int32_t* __restrict__ ids, float* __restrict__ out) {
  const int j = int(blockIdx.y) * blockDim.x + threadIdx.x;
  if (j >= n8) return;
  const int64_t t = blockIdx.x;
  float v[8];
  QDec<T>::dequant8(table + int64_t(ids[t]) * row_bytes, j, v);
  float4* o = reinterpret_cast<float4*>(out + t * int64_t(n8) * 8 + 8 * int64_t(j));
  o[0] = make_float4(v[0], v[1], v[2], v[3]);
  o[1] = make_float4(v[4], v[5], v[6], v[7]);
}

__global__ void k_f32_to_f16(const float* __restrict__ x, __half* __restrict__ y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2half_rn(x[i]);
}

__global__ void k_copy(const uint4* __restrict__ src, uint4* __restrict__ dst, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}

}  // namespace

void dequantize_f16(quant::Type t, const void* w, size_t row_bytes, int64_t n_in, int64_t n_rows,
                    uint16_t* out, Stream stream) {
  if (n_in % 8 != 0) fail("internal error: dequantize_f16 of rows of ", n_in, " values");
  const int64_t total8 = n_rows * (n_in / 8);
  if (total8 == 0) return;
  with_format(t, "dequantize", [&](auto tag) {
    constexpr quant::Type T = decltype(tag)::value;
    k_dequantize_f16<T><<<unsigned(ceil_div(total8, 256)), 256, 0, stream>>>(
        static_cast<const uint8_t*>(w), row_bytes, int(n_in / 8), total8,
        reinterpret_cast<uint4*>(out));
  });
  STRAW_CUDA_CHECK_LAUNCH();
}

void convert_f32_to_f16(const float* x, uint16_t* y, int64_t n, Stream stream) {
  if (n == 0) return;
  k_f32_to_f16<<<grid_stride_blocks(n, 256), 256, 0, stream>>>(x, reinterpret_cast<__half*>(y), n);
  STRAW_CUDA_CHECK_LAUNCH();
}

void get_rows(quant::Type t, const void* table, size_t row_bytes, int64_t n_in, const int32_t* ids,
              int n_ids, float* out, Stream stream) {
  if (n_in % 8 != 0) fail("internal error: get_rows of rows of ", n_in, " values");
  if (n_ids == 0) return;
  const int n8 = int(n_in / 8);
  const dim3 grid(unsigned(n_ids), unsigned(ceil_div(n8, 128)));
  with_format(t, "read rows of", [&](auto tag) {
    constexpr quant::Type T = decltype(tag)::value;
    k_get_rows<T>
        <<<grid, 128, 0, stream>>>(static_cast<const uint8_t*>(table), row_bytes, n8, ids, out);
  });
  STRAW_CUDA_CHECK_LAUNCH();
}

void copy_bytes(void* dst, const void* src, size_t bytes, Stream stream) {
  if (bytes % 16 != 0) fail("internal error: copy_bytes of ", bytes, " bytes");
  const int64_t n = int64_t(bytes / 16);
  if (n == 0) return;
  k_copy<<<grid_stride_blocks(n, 512), 512, 0, stream>>>(static_cast<const uint4*>(src),
                                                         static_cast<uint4*>(dst), n);
  STRAW_CUDA_CHECK_LAUNCH();
}

}  // namespace straw::cuda
