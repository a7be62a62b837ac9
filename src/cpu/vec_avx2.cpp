// Element-wise kernels on AVX2 + FMA + F16C: SwiGLU (with a vectorized exp), the RMSNorm pieces and
// float -> fp16 conversion for the KV cache.
// GCC 12 intrinsics: see the note in matmul_avx2.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "cpu/kernels.h"
#include "cpu/vec_avx2.h"
#include "quant/f16.h"

namespace straw::cpu {

namespace {

// The same vector math for every element, the tail included (through a padded copy), so that an
// element's result does not depend on where it falls in the array: a batch of rows then gives each
// row what it gets alone (rcp's estimate differs between CPU vendors, so the scalar formula in the
// tail would not match the vector lanes anywhere).
template <class F>
inline void map8(float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(i, 8));
  if (i < n) {
    alignas(32) float t[8];
    _mm256_store_ps(t, f(i, int(n - i)));
    std::copy_n(t, n - i, y + i);
  }
}

// Eight floats from x + i, of which the first `valid` are read (the rest are zero).
inline __m256 load8(const float* x, int64_t i, int valid) {
  if (valid == 8) return _mm256_loadu_ps(x + i);
  alignas(32) float t[8] = {};
  std::copy_n(x + i, valid, t);
  return _mm256_load_ps(t);
}

// 1 / (1 + e^-x): reciprocal estimate (12 bits) refined by one Newton step (about 23 bits),
// cheaper than a division.
inline __m256 sigmoid(__m256 x) {
  const __m256 den =
      _mm256_add_ps(_mm256_set1_ps(1.0f), avx2::exp(_mm256_sub_ps(_mm256_setzero_ps(), x)));
  const __m256 inv = _mm256_rcp_ps(den);
  return _mm256_mul_ps(inv, _mm256_fnmadd_ps(den, inv, _mm256_set1_ps(2.0f)));
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  map8(out, n, [&](int64_t i, int valid) {
    const __m256 g = load8(gate, i, valid);
    return _mm256_mul_ps(_mm256_mul_ps(g, sigmoid(g)), load8(up, i, valid));
  });
}

double sum_squares(const float* x, int64_t n) {
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
    const __m256d hi = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
    a0 = _mm256_fmadd_pd(lo, lo, a0);
    a1 = _mm256_fmadd_pd(hi, hi, a1);
  }
  alignas(32) double t[4];
  _mm256_store_pd(t, _mm256_add_pd(a0, a1));
  double s = (t[0] + t[1]) + (t[2] + t[3]);
  for (; i < n; ++i) s += double(x[i]) * x[i];
  return s;
}

void scale_mul(const float* x, float s, const float* g, float* y, int64_t n) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(
        y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), _mm256_loadu_ps(g + i)));
  for (; i < n; ++i) y[i] = x[i] * s * g[i];
}

void silu(float* x, int64_t n) {
  map8(x, n, [&](int64_t i, int valid) {
    const __m256 v = load8(x, i, valid);
    return _mm256_mul_ps(v, sigmoid(v));
  });
}

void sigmoid_mul(float* x, const float* g, int64_t n) {
  map8(x, n, [&](int64_t i, int valid) {
    return _mm256_mul_ps(load8(x, i, valid), sigmoid(load8(g, i, valid)));
  });
}

void f32_to_f16(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) y[i] = quant::fp32_to_fp16(x[i]);
}

}  // namespace

// In attention_avx2.cpp and attention_avx512.cpp.
using AttentionKernel = void(const float* q, const ops::KvLayer& kv, float* out,
                             const ops::AttentionParams& p, int kv_head, int t0, int t1, int64_t k0,
                             int64_t k1, float* partial, float* scratch);
AttentionKernel attention_avx2, attention_avx_vnni, attention_avx512;

constinit const VecKernels kVecKernelsAvx2 = {&swiglu, &sum_squares, &scale_mul,     &f32_to_f16,
                                              &silu,   &sigmoid_mul, &attention_avx2};
constinit const VecKernels kVecKernelsAvxVnni = {
    &swiglu, &sum_squares, &scale_mul, &f32_to_f16, &silu, &sigmoid_mul, &attention_avx_vnni};
constinit const VecKernels kVecKernelsAvx512 = {
    &swiglu, &sum_squares, &scale_mul, &f32_to_f16, &silu, &sigmoid_mul, &attention_avx512};

}  // namespace straw::cpu
