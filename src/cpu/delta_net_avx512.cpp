// The delta-rule kernels (cpu/delta_net_impl.h) built with AVX-512: the token loop on 512-bit
// registers, the chunked form auto-vectorized.
// GCC 12 intrinsics: see the note in matmul_avx2.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/delta_net_impl.h"

namespace straw::cpu {

namespace {

struct Avx512 {
  using reg = __m512;
  static constexpr int kWidth = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg x) { _mm512_storeu_ps(p, x); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
};

}  // namespace

constinit const DeltaNetKernels kDeltaNetAvx512 = {&dn_recurrent_simd<Avx512>, &dn_chunked};

}  // namespace straw::cpu
