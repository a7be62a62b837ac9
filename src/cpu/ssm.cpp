// CPU ops of linear-attention (Gated DeltaNet) layers around the delta rule: the causal depthwise
// convolution with its carried state, the decay and update gates, L2 and gated RMS norms.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "cpu/cpu_backend.h"
#include "util/str.h"

namespace straw::cpu {

namespace {

constexpr int64_t kParallelMin = int64_t(1) << 15;  // as in elementwise.cpp

// log(1 + e^x), exact to float for every x (llama.cpp: x above 20 passes through).
float softplus(float x) {
  return x > 20.0f ? x : std::log1p(std::exp(x));
}

}  // namespace

void CpuBackend::l2norm(float* x, int n_tokens, int rows_per_token, int64_t width,
                        int64_t token_stride, float eps) {
  const VecKernels* vk = vec_kernels(isa_);
  const int64_t n_rows = int64_t(n_tokens) * rows_per_token;
  auto rows = [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      float* xr = x + (r / rows_per_token) * token_stride + (r % rows_per_token) * width;
      double ss = 0;
      if (vk) {
        ss = vk->sum_squares(xr, width);
      } else {
        for (int64_t i = 0; i < width; ++i) ss += double(xr[i]) * xr[i];
      }
      const float scale = 1.0f / std::max(static_cast<float>(std::sqrt(ss)), eps);
      for (int64_t i = 0; i < width; ++i) xr[i] *= scale;
    }
  };
  if (n_rows * width >= kParallelMin && n_rows > 1)
    pool_.parallel_for(n_rows, std::max<int64_t>(1, kParallelMin / width / 4), rows);
  else
    rows(0, n_rows, 0);
}

void CpuBackend::rmsnorm_gated(const float* x, const ops::Weight& w, const float* z, float* y,
                               int64_t n_rows, int64_t width, float eps) {
  const auto* g = static_cast<const float*>(w.data);
  const VecKernels* vk = vec_kernels(isa_);
  auto rows = [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * width;
      const float* zr = z + r * width;
      float* yr = y + r * width;
      double ss = 0;
      if (vk) {
        ss = vk->sum_squares(xr, width);
      } else {
        for (int64_t i = 0; i < width; ++i) ss += double(xr[i]) * xr[i];
      }
      const float scale = static_cast<float>(1.0 / std::sqrt(ss / double(width) + double(eps)));
      if (vk) {
        vk->scale_mul(xr, scale, g, yr, width);
        vk->swiglu(zr, yr, yr, width);  // y = silu(z) * y
      } else {
        for (int64_t i = 0; i < width; ++i)
          yr[i] = xr[i] * scale * g[i] * (zr[i] / (1.0f + std::exp(-zr[i])));
      }
    }
  };
  if (n_rows * width >= kParallelMin && n_rows > 1)
    pool_.parallel_for(n_rows, std::max<int64_t>(1, kParallelMin / width / 4), rows);
  else
    rows(0, n_rows, 0);
}

void CpuBackend::delta_net_gates(float* alpha, float* beta, const ops::Weight& dt_bias,
                                 const ops::Weight& a, int n_tokens, int n_heads) {
  const auto* bias = static_cast<const float*>(dt_bias.data);
  const auto* av = static_cast<const float*>(a.data);
  for (int t = 0; t < n_tokens; ++t) {
    float* al = alpha + int64_t(t) * n_heads;
    float* be = beta + int64_t(t) * n_heads;
    for (int h = 0; h < n_heads; ++h) {
      al[h] = softplus(al[h] + bias[h]) * av[h];
      be[h] = 1.0f / (1.0f + std::exp(-be[h]));
    }
  }
}

void CpuBackend::ssm_conv(const ops::ConvParams& p) {
  const int T = p.n_tokens, C = p.n_channels, K = p.kernel;
  if (T <= 0) return;
  if (K < 1 || C < 1 || p.x_stride < C ||
      (p.snapshot && (p.snapshot_after < 0 || p.snapshot_after >= T)))
    fail("internal error: ssm_conv with ", C, " channels, kernel ", K, ", stride ", p.x_stride,
         ", snapshot after token ", p.snapshot_after, " of ", T);
  // Taps transposed to [K][C] so that the loops below run along channels; once per taps vector
  // (per call it had cost more than a decoded token's convolution: 50 us of a layer's 55 on
  // Qwen3.5 4B, 8192 channels).
  ConvTaps& ct = conv_taps_[p.w];
  const size_t n_taps = size_t(K) * C;
  std::array<float, 8> sample;
  for (size_t i = 0; i < sample.size(); ++i) sample[i] = p.w[n_taps * i / sample.size()];
  if (ct.n != n_taps || std::memcmp(sample.data(), ct.sample.data(), sizeof sample) != 0) {
    ct.n = n_taps;
    ct.sample = sample;
    ct.t.resize(n_taps);
    for (int c = 0; c < C; ++c)
      for (int i = 0; i < K; ++i) ct.t[size_t(i) * C + c] = p.w[size_t(c) * K + i];
  }
  const float* taps = ct.t.data();
  const VecKernels* vk = vec_kernels(isa_);
  // Channels [c0, c1): every token, then the state of those channels.
  auto block = [&](int64_t c0, int64_t c1, int) {
    const int64_t n = c1 - c0;
    for (int t = 0; t < T; ++t) {
      float* __restrict y = p.y + int64_t(t) * C + c0;
      std::fill_n(y, n, 0.0f);
      for (int i = 0; i < K; ++i) {
        // Input position t - K + 1 + i: a row of x, or of the state before the batch.
        const int pos = t - K + 1 + i;
        const float* __restrict src = pos >= 0 ? p.x + int64_t(pos) * p.x_stride + c0
                                               : p.state + int64_t(pos + K - 1) * C + c0;
        const float* __restrict w = taps + size_t(i) * C + c0;
        for (int64_t c = 0; c < n; ++c) y[c] += w[c] * src[c];
      }
      if (p.silu) {
        if (vk) {
          vk->silu(y, n);
        } else {
          for (int64_t c = 0; c < n; ++c) y[c] = y[c] / (1.0f + std::exp(-y[c]));
        }
      }
    }
    // The state after token snapshot_after (positions snapshot_after-K+2 .. snapshot_after),
    // read before the old state is overwritten.
    if (p.snapshot)
      for (int r = 0; r < K - 1; ++r) {
        const int pos = p.snapshot_after - (K - 2) + r;
        const float* src = pos >= 0 ? p.x + int64_t(pos) * p.x_stride + c0
                                    : p.state + int64_t(pos + K - 1) * C + c0;
        std::copy_n(src, n, p.snapshot + int64_t(r) * C + c0);
      }
    // The new state: positions T-K+1 .. T-1, from x or (for short batches) from the old state,
    // whose row r + T is read before row r is written.
    for (int r = 0; r < K - 1; ++r) {
      const int pos = T - (K - 1) + r;
      const float* src =
          pos >= 0 ? p.x + int64_t(pos) * p.x_stride + c0 : p.state + int64_t(r + T) * C + c0;
      std::copy_n(src, n, p.state + int64_t(r) * C + c0);
    }
  };
  if (int64_t(T) * C * K >= kParallelMin)
    pool_.parallel_for(C, 256, block);
  else
    block(0, C, 0);
}

}  // namespace straw::cpu
