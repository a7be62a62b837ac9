// Element-wise kernels: RMSNorm, RoPE, SwiGLU, residual add, bias, KV-cache stores.
#include <cuda_fp16.h>

#include <algorithm>

#include "cuda/common.cuh"
#include "util/str.h"

namespace straw::cuda {

namespace {

// Short rows (per-head q/k norms, width <= 1024): one warp per row.
__global__ void k_rmsnorm_warp(const float* x, const float* __restrict__ w, float* y,
                               int64_t n_rows, int width, float eps) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= n_rows) return;
  const float* xr = x + row * width;
  float ss = 0.0f;
  for (int i = lane; i < width; i += 32) ss += xr[i] * xr[i];
  const float scale = rsqrtf(warp_sum(ss) / float(width) + eps);
  float* yr = y + row * width;  // may alias x: every element is read before it is written
  for (int i = lane; i < width; i += 32) yr[i] = xr[i] * scale * w[i];
}

// Long rows (the residual stream): one block of 256 threads per row.
__global__ void k_rmsnorm_block(const float* x, const float* __restrict__ w, float* y, int width,
                                float eps) {
  __shared__ float scratch[32];
  const float* xr = x + int64_t(blockIdx.x) * width;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < width; i += blockDim.x) ss += xr[i] * xr[i];
  const float scale = rsqrtf(block_sum(ss, scratch) / float(width) + eps);
  float* yr = y + int64_t(blockIdx.x) * width;
  for (int i = threadIdx.x; i < width; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}

// One block per token: the angles of its position are computed once (in double, as the CPU
// reference does, so that large positions keep their precision), then applied to every head.
__global__ void k_rope(RopeArgs a) {
  extern __shared__ float2 cs[];  // [n_rot / 2] (cos, sin)
  const int t = blockIdx.x;
  const int half = a.n_rot / 2;
  const double pos = double(step_pos(a.pos) + t);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    // f_i of ops::RopeParams: the YaRN ramp mixes the interpolated and the original frequency.
    double f = pow(double(a.base), -2.0 * i / a.n_rot);
    if (a.freq_factors) f /= double(a.freq_factors[i]);
    double mix = 0.0;
    if (a.ext_factor != 0.0f) {
      const double y = (i - double(a.yarn_low)) / fmax(0.001, double(a.yarn_high - a.yarn_low));
      mix = (1.0 - fmin(fmax(y, 0.0), 1.0)) * double(a.ext_factor);
    }
    const double theta = pos * (f * (double(a.freq_scale) * (1.0 - mix) + mix));
    double s, c;
    sincos(theta, &s, &c);
    cs[i] = make_float2(float(c * double(a.mscale)), float(s * double(a.mscale)));
  }
  __syncthreads();
  float* xt = a.x + int64_t(t) * a.n_heads * a.head_dim;
  for (int k = threadIdx.x; k < a.n_heads * half; k += blockDim.x) {
    const int h = k / half, i = k % half;
    float* v = xt + int64_t(h) * a.head_dim;
    const int ia = a.neox ? i : 2 * i;
    const int ib = a.neox ? i + half : 2 * i + 1;
    const float x0 = v[ia], x1 = v[ib];
    const float2 r = cs[i];
    v[ia] = x0 * r.x - x1 * r.y;
    v[ib] = x0 * r.y + x1 * r.x;
  }
}

__global__ void k_swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void k_add(float* x, const float* __restrict__ y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

__global__ void k_add_bias(float* y, const float* __restrict__ b, int64_t n, int64_t width) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] += b[i % width];
}

// Block (token, chunk): rows of k and v written at cache row pos + token.
template <bool F16>
__global__ void k_kv_store(void* k_cache, void* v_cache, const float* __restrict__ k,
                           const float* __restrict__ v, StepPos pos, int64_t k_width,
                           int64_t v_width) {
  const int64_t t = blockIdx.x;
  const int64_t row = step_pos(pos) + t;
  const int64_t i = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (i < k_width) {
    const float val = k[t * k_width + i];
    if (F16)
      static_cast<__half*>(k_cache)[row * k_width + i] = __float2half_rn(val);
    else
      static_cast<float*>(k_cache)[row * k_width + i] = val;
  }
  if (i < v_width) {
    const float val = v[t * v_width + i];
    if (F16)
      static_cast<__half*>(v_cache)[row * v_width + i] = __float2half_rn(val);
    else
      static_cast<float*>(v_cache)[row * v_width + i] = val;
  }
}

// Quantized cache rows: one warp per block of 32 elements (lane = element), grid (token, block
// group); llama.cpp's reference rounding as quant/q8_0.cpp and quant/q4_0.cpp.
__device__ void store_block(KvQuant qt, uint8_t* dst, float x, int lane) {
  float amax = fabsf(x);
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if (qt == KvQuant::Q8_0) {
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const float v = roundf(__fmul_rn(x, id));  // ties away from zero, as round_level
    const int q = v != v ? 0 : int(fminf(fmaxf(v, -127.0f), 127.0f));
    if (lane == 0) *reinterpret_cast<__half*>(dst) = __float2half_rn(d);
    reinterpret_cast<int8_t*>(dst + 2)[lane] = int8_t(q);
    return;
  }
  // Q4_0: the first element of largest magnitude maps to level 0 (d = that value / -8).
  const unsigned first = __ffs(__ballot_sync(0xffffffffu, fabsf(x) == amax)) - 1;
  const float extreme = __shfl_sync(0xffffffffu, x, int(first));
  const float d = extreme / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const float v = __fadd_rn(__fmul_rn(x, id), 8.5f);  // no FMA: the CPU's rounding
  const int level = !(v > 0.0f) ? 0 : v >= 15.0f ? 15 : int(v);
  const int high = __shfl_down_sync(0xffffffffu, level, 16);
  if (lane == 0) *reinterpret_cast<__half*>(dst) = __float2half_rn(d);
  if (lane < 16) dst[2 + lane] = uint8_t(level | high << 4);
}

__device__ __forceinline__ size_t quant_row_bytes(KvQuant qt, int64_t width) {
  return size_t(width / 32) * (qt == KvQuant::Q8_0 ? 34 : 18);
}

// One row's K or V of token t: a float row as k_kv_store does, or quantized blocks.
template <bool F16>
__device__ void store_any(KvQuant qt, void* cache, const float* src, int64_t row, int64_t width,
                          int64_t block, int lane) {
  if (qt == KvQuant::None) {
    for (int64_t i = block * 32 + lane; i < width && i < (block + 1) * 32; i += 32) {
      if (F16)
        static_cast<__half*>(cache)[row * width + i] = __float2half_rn(src[i]);
      else
        static_cast<float*>(cache)[row * width + i] = src[i];
    }
    return;
  }
  if (block * 32 >= width) return;
  uint8_t* dst = static_cast<uint8_t*>(cache) + row * quant_row_bytes(qt, width) +
                 size_t(block) * (qt == KvQuant::Q8_0 ? 34 : 18);
  store_block(qt, dst, src[block * 32 + lane], lane);
}

// Grid (token, groups of 8 blocks of 32 elements); 8 warps, one block each.
template <bool F16>
__global__ void k_kv_store_quant(KvQuant kq, KvQuant vq, void* k_cache, void* v_cache,
                                 const float* __restrict__ k, const float* __restrict__ v,
                                 StepPos pos, int64_t k_width, int64_t v_width) {
  const int64_t t = blockIdx.x;
  const int64_t row = step_pos(pos) + t;
  const int lane = threadIdx.x & 31;
  const int64_t block = int64_t(blockIdx.y) * 8 + (threadIdx.x >> 5);
  if (block * 32 < k_width) store_any<F16>(kq, k_cache, k + t * k_width, row, k_width, block, lane);
  if (block * 32 < v_width) store_any<F16>(vq, v_cache, v + t * v_width, row, v_width, block, lane);
}

}  // namespace

void rmsnorm(const float* x, const float* w, float* y, int64_t n_rows, int64_t width, float eps,
             Stream stream) {
  if (n_rows <= 0) return;
  if (width <= 1024) {
    k_rmsnorm_warp<<<unsigned(ceil_div(n_rows, 8)), 256, 0, stream>>>(x, w, y, n_rows, int(width),
                                                                      eps);
  } else {
    if (n_rows > 0x7fffffff) fail("internal error: rmsnorm of ", n_rows, " rows");
    k_rmsnorm_block<<<unsigned(n_rows), 256, 0, stream>>>(x, w, y, int(width), eps);
  }
  STRAW_CUDA_CHECK_LAUNCH();
}

void rope(const RopeArgs& a, Stream stream) {
  if (a.n_tokens <= 0 || a.n_rot <= 0) return;
  if (a.n_rot % 2 != 0 || a.n_rot > a.head_dim)
    fail("internal error: RoPE over ", a.n_rot, " of ", a.head_dim, " dims");
  k_rope<<<unsigned(a.n_tokens), 256, size_t(a.n_rot / 2) * sizeof(float2), stream>>>(a);
  STRAW_CUDA_CHECK_LAUNCH();
}

void swiglu(const float* gate, const float* up, float* out, int64_t n, Stream stream) {
  if (n <= 0) return;
  k_swiglu<<<grid_stride_blocks(n, 256), 256, 0, stream>>>(gate, up, out, n);
  STRAW_CUDA_CHECK_LAUNCH();
}

void add(float* x, const float* y, int64_t n, Stream stream) {
  if (n <= 0) return;
  k_add<<<grid_stride_blocks(n, 256), 256, 0, stream>>>(x, y, n);
  STRAW_CUDA_CHECK_LAUNCH();
}

void add_bias(float* y, const float* b, int64_t n_rows, int64_t width, Stream stream) {
  const int64_t n = n_rows * width;
  if (n <= 0) return;
  k_add_bias<<<grid_stride_blocks(n, 256), 256, 0, stream>>>(y, b, n, width);
  STRAW_CUDA_CHECK_LAUNCH();
}

void kv_store(bool f16, KvQuant k_quant, KvQuant v_quant, void* k_cache, void* v_cache,
              const float* k, const float* v, int n_tokens, StepPos pos, int64_t k_width,
              int64_t v_width, Stream stream) {
  if (n_tokens <= 0) return;
  if (k_quant != KvQuant::None || v_quant != KvQuant::None) {
    if ((k_quant != KvQuant::None && k_width % 32 != 0) ||
        (v_quant != KvQuant::None && v_width % 32 != 0))
      fail("internal error: a quantized KV cache row of ", k_width, " / ", v_width,
           " elements (not whole blocks of 32)");
    const int64_t blocks = ceil_div(std::max(k_width, v_width), 32);
    const dim3 grid(unsigned(n_tokens), unsigned(ceil_div(blocks, 8)));
    if (f16)
      k_kv_store_quant<true><<<grid, 256, 0, stream>>>(k_quant, v_quant, k_cache, v_cache, k, v,
                                                       pos, k_width, v_width);
    else
      k_kv_store_quant<false><<<grid, 256, 0, stream>>>(k_quant, v_quant, k_cache, v_cache, k, v,
                                                        pos, k_width, v_width);
    STRAW_CUDA_CHECK_LAUNCH();
    return;
  }
  const dim3 grid(unsigned(n_tokens), unsigned(ceil_div(std::max(k_width, v_width), 256)));
  if (f16)
    k_kv_store<true><<<grid, 256, 0, stream>>>(k_cache, v_cache, k, v, pos, k_width, v_width);
  else
    k_kv_store<false><<<grid, 256, 0, stream>>>(k_cache, v_cache, k, v, pos, k_width, v_width);
  STRAW_CUDA_CHECK_LAUNCH();
}

}  // namespace straw::cuda
