// Kernels of qwen35's linear-attention (Gated DeltaNet) and gated-attention layers: the causal
// depthwise convolution with its carried state, the gated delta rule, the decay / update gates,
// the L2 and gated RMS norms, the sigmoid output gate and strided row copies. The math of each is
// the contract in ops/backend.h; the CPU ops (cpu/ssm.cpp, cpu/delta_net.cpp) are the reference.
#include <algorithm>

#include "cuda/common.cuh"
#include "util/str.h"

namespace straw::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void k_copy_rows(const float* __restrict__ src, int64_t src_stride,
                            float* __restrict__ dst, int64_t dst_stride, int64_t n_rows,
                            int64_t width) {
  const int64_t n = n_rows * width;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / width, c = i % width;
    dst[r * dst_stride + c] = src[r * src_stride + c];
  }
}

__global__ void k_sigmoid_mul(float* x, const float* __restrict__ g, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= sigmoidf(g[i]);
}

// One warp per row: row r is row r % rows_per_token of token r / rows_per_token.
__global__ void k_l2norm(float* x, int64_t n_rows, int rows_per_token, int width,
                         int64_t token_stride, float eps) {
  const int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= n_rows) return;
  float* xr = x + (r / rows_per_token) * token_stride + (r % rows_per_token) * int64_t(width);
  float ss = 0.0f;
  for (int i = lane; i < width; i += 32) ss += xr[i] * xr[i];
  const float scale = 1.0f / fmaxf(sqrtf(warp_sum(ss)), eps);
  for (int i = lane; i < width; i += 32) xr[i] *= scale;
}

// One warp per row (the rows are value heads, 64-256 wide): y = x / rms(x) * w * silu(z). y may
// alias x: the sum of squares reads the whole row before any element is written.
__global__ void k_rmsnorm_gated(const float* x, const float* __restrict__ w,
                                const float* __restrict__ z, float* y, int64_t n_rows, int width,
                                float eps) {
  const int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= n_rows) return;
  const float* xr = x + r * width;
  const float* zr = z + r * width;
  float ss = 0.0f;
  for (int i = lane; i < width; i += 32) ss += xr[i] * xr[i];
  const float scale = rsqrtf(warp_sum(ss) / float(width) + eps);
  float* yr = y + r * width;
  for (int i = lane; i < width; i += 32) {
    const float zi = zr[i];
    yr[i] = xr[i] * scale * w[i] * (zi * sigmoidf(zi));
  }
}

// alpha -> log decay softplus(alpha + dt_bias) * a (llama.cpp: softplus passes x > 20 through);
// beta -> sigmoid(beta).
__global__ void k_delta_net_gates(float* alpha, float* beta, const float* __restrict__ dt_bias,
                                  const float* __restrict__ a, int64_t n, int n_heads) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int h = int(i % n_heads);
    const float s = alpha[i] + dt_bias[h];
    alpha[i] = (s > 20.0f ? s : log1pf(expf(s))) * a[h];
    beta[i] = sigmoidf(beta[i]);
  }
}

// One thread per channel: the K-1 previous inputs in registers, the tokens in order. The sum runs
// over the taps oldest first, as the CPU's does.
__global__ void k_ssm_conv(ConvArgs a) {
  const int c = int(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= a.n_channels) return;
  const int C = a.n_channels, K = a.kernel;
  float hist[kMaxConvKernel - 1];
  float taps[kMaxConvKernel];
#pragma unroll
  for (int i = 0; i < kMaxConvKernel; ++i) taps[i] = i < K ? a.w[int64_t(c) * K + i] : 0.0f;
#pragma unroll
  for (int r = 0; r < kMaxConvKernel - 1; ++r)
    hist[r] = r < K - 1 ? a.state[int64_t(r) * C + c] : 0.0f;
  for (int t = 0; t < a.n_tokens; ++t) {
    const float xt = a.x[int64_t(t) * a.x_stride + c];
    float y = 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxConvKernel; ++i) {
      if (i < K - 1)
        y += taps[i] * hist[i];
      else if (i == K - 1)
        y += taps[i] * xt;
    }
    if (a.silu) y *= sigmoidf(y);
    a.y[int64_t(t) * C + c] = y;
    // Shift the window: the oldest input leaves, x_t enters as the newest.
#pragma unroll
    for (int i = 0; i < kMaxConvKernel - 2; ++i)
      if (i < K - 2) hist[i] = hist[i + 1];
    if (K > 1) {
#pragma unroll
      for (int i = 0; i < kMaxConvKernel - 1; ++i)
        if (i == K - 2) hist[i] = xt;
    }
    if (a.snapshot && t == a.snapshot_after) {
#pragma unroll
      for (int r = 0; r < kMaxConvKernel - 1; ++r)
        if (r < K - 1) a.snapshot[int64_t(r) * C + c] = hist[r];
    }
  }
#pragma unroll
  for (int r = 0; r < kMaxConvKernel - 1; ++r)
    if (r < K - 1) a.state[int64_t(r) * C + c] = hist[r];
}

// The gated delta rule, one warp per (value head h, 32 / P value columns): P threads share column
// j of the head's state, S[0..S)[j], each holding S / P rows of it in registers for the whole
// batch, so the state is read and written once per call whatever the number of tokens (P = 2 for
// heads of 128: 64 rows per thread, without spills). Per token (q, k of key head h % Hk in shared
// memory, read by every thread):
//   S[:, j] *= e^g;  d = beta (v_j - S[:, j] . k);  S[:, j] += k d;  out_j = scale S[:, j] . q
// the two dot products summed over the P threads of the column by shuffles.
template <int S, int P>
__global__ void __launch_bounds__(32) k_delta_net_regs(DeltaNetArgs a) {
  constexpr int R = S / P, kCols = 32 / P;
  __shared__ float ks[S], qs[S];
  const int h = blockIdx.x, lane = threadIdx.x;
  const int j = int(blockIdx.y) * kCols + lane / P;
  const int i0 = (lane % P) * R;
  const int kh = h % a.n_k_heads, H = a.n_v_heads;
  const bool owner = lane % P == 0;  // writes the column's output
  float* st = a.state + int64_t(h) * S * S;
  float col[R];
#pragma unroll
  for (int i = 0; i < R; ++i) col[i] = st[int64_t(i0 + i) * S + j];
  for (int t = 0; t < a.n_tokens; ++t) {
    const float* k = a.k + int64_t(t) * a.qk_stride + int64_t(kh) * S;
    const float* q = a.q + int64_t(t) * a.qk_stride + int64_t(kh) * S;
    __syncwarp();  // the previous token's reads of ks / qs are done
    for (int i = lane; i < S; i += 32) {
      ks[i] = k[i];
      qs[i] = q[i];
    }
    __syncwarp();
    const float eg = expf(a.g[int64_t(t) * H + h]);
    const float b = a.beta[int64_t(t) * H + h];
    float kv = 0.0f;
#pragma unroll
    for (int i = 0; i < R; ++i) {
      col[i] *= eg;
      kv += col[i] * ks[i0 + i];
    }
#pragma unroll
    for (int o = 1; o < P; o <<= 1) kv += __shfl_xor_sync(0xffffffffu, kv, o);
    const float v = a.v[int64_t(t) * a.v_stride + int64_t(h) * S + j];
    const float d = b * (v - kv);
    float o = 0.0f;
#pragma unroll
    for (int i = 0; i < R; ++i) {
      col[i] += ks[i0 + i] * d;
      o += col[i] * qs[i0 + i];
    }
#pragma unroll
    for (int m = 1; m < P; m <<= 1) o += __shfl_xor_sync(0xffffffffu, o, m);
    if (owner) a.out[(int64_t(t) * H + h) * S + j] = a.scale * o;
    if (a.snapshot && t == a.snapshot_after) {
      float* snap = a.snapshot + int64_t(h) * S * S;
#pragma unroll
      for (int i = 0; i < R; ++i) snap[int64_t(i0 + i) * S + j] = col[i];
    }
  }
#pragma unroll
  for (int i = 0; i < R; ++i) st[int64_t(i0 + i) * S + j] = col[i];
}

// Any other head size: the same per-column loop with the state in global memory (two passes over
// the column per token), q and k in dynamic shared memory.
__global__ void k_delta_net_global(DeltaNetArgs a) {
  extern __shared__ float sh[];  // ks [S], qs [S]
  const int S = a.head_dim;
  float* ks = sh;
  float* qs = sh + S;
  const int h = blockIdx.x, lane = threadIdx.x;
  const int j = int(blockIdx.y) * 32 + lane;
  const int kh = h % a.n_k_heads, H = a.n_v_heads;
  float* st = a.state + int64_t(h) * S * S;
  for (int t = 0; t < a.n_tokens; ++t) {
    const float* k = a.k + int64_t(t) * a.qk_stride + int64_t(kh) * S;
    const float* q = a.q + int64_t(t) * a.qk_stride + int64_t(kh) * S;
    __syncwarp();
    for (int i = lane; i < S; i += 32) {
      ks[i] = k[i];
      qs[i] = q[i];
    }
    __syncwarp();
    if (j >= S) continue;
    const float eg = expf(a.g[int64_t(t) * H + h]);
    const float b = a.beta[int64_t(t) * H + h];
    float kv = 0.0f;
    for (int i = 0; i < S; ++i) {
      const float s = st[int64_t(i) * S + j] * eg;
      st[int64_t(i) * S + j] = s;
      kv += s * ks[i];
    }
    const float d = b * (a.v[int64_t(t) * a.v_stride + int64_t(h) * S + j] - kv);
    float o = 0.0f;
    for (int i = 0; i < S; ++i) {
      const float s = st[int64_t(i) * S + j] + ks[i] * d;
      st[int64_t(i) * S + j] = s;
      o += s * qs[i];
    }
    a.out[(int64_t(t) * H + h) * S + j] = a.scale * o;
    if (a.snapshot && t == a.snapshot_after) {
      float* snap = a.snapshot + int64_t(h) * S * S;
      for (int i = 0; i < S; ++i) snap[int64_t(i) * S + j] = st[int64_t(i) * S + j];
    }
  }
}

}  // namespace

void copy_rows(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t n_rows,
               int64_t width, Stream stream) {
  if (n_rows <= 0 || width <= 0) return;
  k_copy_rows<<<grid_stride_blocks(n_rows * width, kThreads), kThreads, 0, stream>>>(
      src, src_stride, dst, dst_stride, n_rows, width);
  STRAW_CUDA_CHECK(cudaGetLastError());
}

void sigmoid_mul(float* x, const float* g, int64_t n, Stream stream) {
  if (n <= 0) return;
  k_sigmoid_mul<<<grid_stride_blocks(n, kThreads), kThreads, 0, stream>>>(x, g, n);
  STRAW_CUDA_CHECK(cudaGetLastError());
}

void l2norm(float* x, int n_tokens, int rows_per_token, int64_t width, int64_t token_stride,
            float eps, Stream stream) {
  const int64_t n_rows = int64_t(n_tokens) * rows_per_token;
  if (n_rows <= 0 || width <= 0) return;
  if (width > INT32_MAX) fail("internal error: l2norm rows of ", width, " values");
  constexpr int kRowsPerBlock = kThreads / 32;
  k_l2norm<<<unsigned(ceil_div(n_rows, kRowsPerBlock)), kThreads, 0, stream>>>(
      x, n_rows, rows_per_token, int(width), token_stride, eps);
  STRAW_CUDA_CHECK(cudaGetLastError());
}

void rmsnorm_gated(const float* x, const float* w, const float* z, float* y, int64_t n_rows,
                   int64_t width, float eps, Stream stream) {
  if (n_rows <= 0 || width <= 0) return;
  if (width > INT32_MAX) fail("internal error: rmsnorm_gated rows of ", width, " values");
  constexpr int kRowsPerBlock = kThreads / 32;
  k_rmsnorm_gated<<<unsigned(ceil_div(n_rows, kRowsPerBlock)), kThreads, 0, stream>>>(
      x, w, z, y, n_rows, int(width), eps);
  STRAW_CUDA_CHECK(cudaGetLastError());
}

void delta_net_gates(float* alpha, float* beta, const float* dt_bias, const float* a, int n_tokens,
                     int n_heads, Stream stream) {
  const int64_t n = int64_t(n_tokens) * n_heads;
  if (n <= 0) return;
  k_delta_net_gates<<<grid_stride_blocks(n, kThreads), kThreads, 0, stream>>>(alpha, beta, dt_bias,
                                                                              a, n, n_heads);
  STRAW_CUDA_CHECK(cudaGetLastError());
}

void ssm_conv(const ConvArgs& a, Stream stream) {
  if (a.n_tokens <= 0) return;
  if (a.kernel < 1 || a.kernel > kMaxConvKernel || a.n_channels < 1 || a.x_stride < a.n_channels ||
      (a.snapshot && (a.snapshot_after < 0 || a.snapshot_after >= a.n_tokens)))
    fail("CUDA ssm_conv: ", a.n_channels, " channels, kernel ", a.kernel, " (at most ",
         kMaxConvKernel, "), stride ", a.x_stride, ", snapshot after token ", a.snapshot_after,
         " of ", a.n_tokens);
  k_ssm_conv<<<unsigned(ceil_div(a.n_channels, 128)), 128, 0, stream>>>(a);
  STRAW_CUDA_CHECK(cudaGetLastError());
}

void gated_delta_net(const DeltaNetArgs& a, Stream stream) {
  if (a.n_tokens <= 0) return;
  if (a.n_k_heads <= 0 || a.n_v_heads % a.n_k_heads != 0 || a.head_dim <= 0 ||
      (a.snapshot && (a.snapshot_after < 0 || a.snapshot_after >= a.n_tokens)))
    fail("CUDA gated_delta_net: ", a.n_v_heads, " value heads over ", a.n_k_heads, " key heads of ",
         a.head_dim, ", snapshot after token ", a.snapshot_after, " of ", a.n_tokens);
  // Columns per warp: 32 / P.
  const auto grid = [&](int p) {
    return dim3(unsigned(a.n_v_heads), unsigned(ceil_div(a.head_dim, 32 / p)));
  };
  switch (a.head_dim) {
    case 32:
      k_delta_net_regs<32, 1><<<grid(1), 32, 0, stream>>>(a);
      break;
    case 64:
      k_delta_net_regs<64, 1><<<grid(1), 32, 0, stream>>>(a);
      break;
    case 128:
      k_delta_net_regs<128, 2><<<grid(2), 32, 0, stream>>>(a);
      break;
    default: {
      const size_t shared = 2 * size_t(a.head_dim) * sizeof(float);
      if (shared > 48 * 1024) fail("CUDA gated_delta_net: heads of ", a.head_dim, " values");
      k_delta_net_global<<<grid(1), 32, shared, stream>>>(a);
    }
  }
  STRAW_CUDA_CHECK(cudaGetLastError());
}

}  // namespace straw::cuda
