// CPU reference element-wise ops: RMSNorm, RoPE, SwiGLU, residual add, bias.
#include <cmath>

#include "cpu/cpu_backend.h"
#include "util/str.h"

namespace straw::cpu {

CpuBackend::CpuBackend(int n_threads) : pool_(n_threads), scratch_(pool_.size()) {}

float* CpuBackend::scratch(int thread, size_t n_floats) {
  std::vector<float>& s = scratch_[thread];
  if (s.size() < n_floats) s.resize(n_floats);
  return s.data();
}

void CpuBackend::add_bias(float* y, const ops::Weight& b, int64_t n_rows, int64_t width) {
  const auto* bias = static_cast<const float*>(b.data);
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t i = 0; i < width; ++i) y[r * width + i] += bias[i];
}

void CpuBackend::rmsnorm(const float* x, const ops::Weight& w, float* y, int64_t n_rows,
                         int64_t width, float eps) {
  // Accumulate the mean square in double: rows are short and this keeps the norm exact to float.
  const auto* g = static_cast<const float*>(w.data);
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * width;
    float* yr = y + r * width;
    double ss = 0;
    for (int64_t i = 0; i < width; ++i) ss += double(xr[i]) * xr[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(ss / double(width) + double(eps)));
    for (int64_t i = 0; i < width; ++i) yr[i] = xr[i] * scale * g[i];
  }
}

void CpuBackend::rope(float* x, int n_tokens, int n_heads, int head_dim, int64_t pos0,
                      const ops::RopeParams& p) {
  const int half = p.n_rot / 2;
  for (int t = 0; t < n_tokens; ++t) {
    const double pos = double(pos0 + t);
    for (int i = 0; i < half; ++i) {
      double theta = pos * double(p.freq_scale) * std::pow(double(p.base), -2.0 * i / p.n_rot);
      if (p.freq_factors) theta /= double(p.freq_factors[i]);
      const float c = static_cast<float>(std::cos(theta)), s = static_cast<float>(std::sin(theta));
      // The pair rotated by angle theta_i: adjacent (NORM) or half a rotation apart (NEOX).
      const int a = p.mode == ops::RopeMode::Norm ? 2 * i : i;
      const int b = p.mode == ops::RopeMode::Norm ? 2 * i + 1 : i + half;
      for (int h = 0; h < n_heads; ++h) {
        float* v = x + (int64_t(t) * n_heads + h) * head_dim;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
      }
    }
  }
}

void CpuBackend::swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void CpuBackend::add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace straw::cpu
