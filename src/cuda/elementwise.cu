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

unsigned blocks_for(int64_t n, int threads) {
  return unsigned(std::min<int64_t>(ceil_div(n, threads), 65535));
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
  k_swiglu<<<blocks_for(n, 256), 256, 0, stream>>>(gate, up, out, n);
  STRAW_CUDA_CHECK_LAUNCH();
}

void add(float* x, const float* y, int64_t n, Stream stream) {
  if (n <= 0) return;
  k_add<<<blocks_for(n, 256), 256, 0, stream>>>(x, y, n);
  STRAW_CUDA_CHECK_LAUNCH();
}

void add_bias(float* y, const float* b, int64_t n_rows, int64_t width, Stream stream) {
  const int64_t n = n_rows * width;
  if (n <= 0) return;
  k_add_bias<<<blocks_for(n, 256), 256, 0, stream>>>(y, b, n, width);
  STRAW_CUDA_CHECK_LAUNCH();
}

void kv_store(bool f16, void* k_cache, void* v_cache, const float* k, const float* v, int n_tokens,
              StepPos pos, int64_t k_width, int64_t v_width, Stream stream) {
  if (n_tokens <= 0) return;
  const dim3 grid(unsigned(n_tokens), unsigned(ceil_div(std::max(k_width, v_width), 256)));
  if (f16)
    k_kv_store<true><<<grid, 256, 0, stream>>>(k_cache, v_cache, k, v, pos, k_width, v_width);
  else
    k_kv_store<false><<<grid, 256, 0, stream>>>(k_cache, v_cache, k, v, pos, k_width, v_width);
  STRAW_CUDA_CHECK_LAUNCH();
}

}  // namespace straw::cuda
