// CPU element-wise ops: RMSNorm, RoPE, SwiGLU, residual add, bias, row copies, sigmoid gate. SIMD
// through vec_kernels() when the ISA has them; split over the threads when a batch is large enough
// to pay for a region.
#include <algorithm>
#include <cmath>

#include "cpu/cpu_backend.h"
#include "util/str.h"

namespace straw::cpu {

namespace {

// Elements below which an op runs on the calling thread (a region costs about a microsecond).
constexpr int64_t kParallelMin = int64_t(1) << 15;

bool same_rope(const ops::RopeParams& a, const ops::RopeParams& b) {
  return a.mode == b.mode && a.n_rot == b.n_rot && a.base == b.base &&
         a.freq_scale == b.freq_scale && a.freq_factors == b.freq_factors &&
         a.ext_factor == b.ext_factor && a.yarn_low == b.yarn_low && a.yarn_high == b.yarn_high &&
         a.mscale == b.mscale;
}

}  // namespace

void CpuBackend::add_bias(float* y, const ops::Weight& b, int64_t n_rows, int64_t width) {
  const auto* bias = static_cast<const float*>(b.data);
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t i = 0; i < width; ++i) y[r * width + i] += bias[i];
}

void CpuBackend::rmsnorm(const float* x, const ops::Weight& w, float* y, int64_t n_rows,
                         int64_t width, float eps) {
  // The mean square accumulates in double: this keeps the norm exact to float.
  const auto* g = static_cast<const float*>(w.data);
  const VecKernels* vk = vec_kernels(isa_);
  auto rows = [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * width;
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
      } else {
        for (int64_t i = 0; i < width; ++i) yr[i] = xr[i] * scale * g[i];
      }
    }
  };
  if (n_rows * width >= kParallelMin && n_rows > 1)
    pool_.parallel_for(n_rows, std::max<int64_t>(1, kParallelMin / width / 4), rows);
  else
    rows(0, n_rows, 0);
}

void CpuBackend::rope(float* x, int n_tokens, int n_heads, int head_dim, int64_t pos0,
                      const ops::RopeParams& p) {
  const int half = p.n_rot / 2;
  // cos / sin of theta_i for every token of the batch, computed once and reused by q and k of
  // every layer (the next calls with the same positions and parameters). A step of several
  // sequences has one position range per sequence: a few tables are kept, the oldest replaced.
  RopeTable* tab = nullptr;
  for (RopeTable& r : rope_tables_)
    if (r.pos0 == pos0 && r.n_tokens >= n_tokens && same_rope(r.params, p)) tab = &r;
  if (!tab) {
    tab = &rope_tables_[rope_next_++ % rope_tables_.size()];
    tab->cs.resize(size_t(n_tokens) * half * 2);
    // f_i of ops::RopeParams, in double so that large positions keep their precision.
    std::vector<double> freq(half);
    for (int i = 0; i < half; ++i) {
      double f = std::pow(double(p.base), -2.0 * i / p.n_rot);
      if (p.freq_factors) f /= double(p.freq_factors[i]);
      double mix = 0.0;  // YaRN: the share of the extrapolated (unscaled) frequency
      if (p.ext_factor != 0.0f) {
        const double y =
            (i - double(p.yarn_low)) / std::max(0.001, double(p.yarn_high - p.yarn_low));
        mix = (1.0 - std::clamp(y, 0.0, 1.0)) * double(p.ext_factor);
      }
      freq[i] = f * (double(p.freq_scale) * (1.0 - mix) + mix);
    }
    const double mscale = p.mscale;
    auto fill = [&](int64_t t0, int64_t t1, int) {
      for (int64_t t = t0; t < t1; ++t) {
        const double pos = double(pos0 + t);
        for (int i = 0; i < half; ++i) {
          const double theta = pos * freq[i];
          tab->cs[(t * half + i) * 2] = static_cast<float>(std::cos(theta) * mscale);
          tab->cs[(t * half + i) * 2 + 1] = static_cast<float>(std::sin(theta) * mscale);
        }
      }
    };
    if (n_tokens >= 16)
      pool_.parallel_for(n_tokens, 4, fill);
    else
      fill(0, n_tokens, 0);
    tab->pos0 = pos0;
    tab->n_tokens = n_tokens;
    tab->params = p;
  }
  const float* table = tab->cs.data();
  auto tokens = [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* cs = table + t * half * 2;
      for (int h = 0; h < n_heads; ++h) {
        float* v = x + (t * n_heads + h) * head_dim;
        // The pair rotated by angle theta_i: adjacent (NORM) or half a rotation apart (NEOX).
        if (p.mode == ops::RopeMode::Norm) {
          for (int i = 0; i < half; ++i) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const float x0 = v[2 * i], x1 = v[2 * i + 1];
            v[2 * i] = x0 * c - x1 * s;
            v[2 * i + 1] = x0 * s + x1 * c;
          }
        } else {
          for (int i = 0; i < half; ++i) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const float x0 = v[i], x1 = v[i + half];
            v[i] = x0 * c - x1 * s;
            v[i + half] = x0 * s + x1 * c;
          }
        }
      }
    }
  };
  if (int64_t(n_tokens) * n_heads * head_dim >= kParallelMin && n_tokens > 1)
    pool_.parallel_for(n_tokens, 4, tokens);
  else
    tokens(0, n_tokens, 0);
}

void CpuBackend::swiglu(const float* gate, const float* up, float* out, int64_t n) {
  const VecKernels* vk = vec_kernels(isa_);
  auto run = [&](int64_t i0, int64_t i1, int) {
    if (vk) {
      vk->swiglu(gate + i0, up + i0, out + i0, i1 - i0);
      return;
    }
    for (int64_t i = i0; i < i1; ++i) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  };
  if (n >= kParallelMin)
    pool_.parallel_for(n, kParallelMin / 2, run);
  else
    run(0, n, 0);
}

void CpuBackend::add(float* x, const float* y, int64_t n) {
  auto run = [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) x[i] += y[i];
  };
  if (n >= 4 * kParallelMin)
    pool_.parallel_for(n, 2 * kParallelMin, run);
  else
    run(0, n, 0);
}

void CpuBackend::copy_rows(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                           int64_t n_rows, int64_t width) {
  auto run = [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r)
      std::copy_n(src + r * src_stride, width, dst + r * dst_stride);
  };
  if (n_rows * width >= 4 * kParallelMin && n_rows > 1)
    pool_.parallel_for(n_rows, std::max<int64_t>(1, 2 * kParallelMin / width), run);
  else
    run(0, n_rows, 0);
}

void CpuBackend::sigmoid_scale_rows(float* y, const float* g, int64_t n_rows, int64_t width) {
  // One multiply per element: scalar code is as fast as the memory it streams.
  for (int64_t r = 0; r < n_rows; ++r) {
    const float s = 1.0f / (1.0f + std::exp(-g[r]));
    float* row = y + r * width;
    for (int64_t i = 0; i < width; ++i) row[i] *= s;
  }
}

void CpuBackend::sigmoid_mul(float* x, const float* g, int64_t n) {
  const VecKernels* vk = vec_kernels(isa_);
  auto run = [&](int64_t i0, int64_t i1, int) {
    if (vk) return vk->sigmoid_mul(x + i0, g + i0, i1 - i0);
    for (int64_t i = i0; i < i1; ++i) x[i] *= 1.0f / (1.0f + std::exp(-g[i]));
  };
  if (n >= kParallelMin)
    pool_.parallel_for(n, kParallelMin / 2, run);
  else
    run(0, n, 0);
}

}  // namespace straw::cpu
