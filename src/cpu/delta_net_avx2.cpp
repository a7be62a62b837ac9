// The delta-rule kernels (cpu/delta_net_impl.h) built with AVX2 + FMA: the token loop on 256-bit
// registers, the chunked form auto-vectorized.
// GCC 12 intrinsics: see the note in matmul_avx2.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/delta_net_impl.h"

namespace straw::cpu {

namespace {

struct Avx2 {
  using reg = __m256;
  static constexpr int kWidth = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg x) { _mm256_storeu_ps(p, x); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
};

// Blocks of at most 2 registers (16 columns): 4 would not leave the 16 ymm registers room.
void dn_recurrent_avx2(const ops::DeltaNetParams& p, int h, float* scratch) {
  const DnHead hd = dn_head(p, h);
  if (hd.S % Avx2::kWidth != 0) return dn_recurrent(p, h, scratch);
  int j = 0;
  for (; j + 2 * Avx2::kWidth <= hd.S; j += 2 * Avx2::kWidth) dn_recurrent_block<Avx2, 2>(p, hd, j);
  for (; j < hd.S; j += Avx2::kWidth) dn_recurrent_block<Avx2, 1>(p, hd, j);
}

}  // namespace

constinit const DeltaNetKernels kDeltaNetAvx2 = {&dn_recurrent_avx2, &dn_chunked};

}  // namespace straw::cpu
