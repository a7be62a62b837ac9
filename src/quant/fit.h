// Scale searches shared by the weight quantizers (K-quants, IQ4_NL, IQ4_XS). Internal to src/quant.
//
// Each search fits a small group of values (16 or 32) with a step (and for the affine formats an
// offset): it tries candidate steps around the one that maps the extreme exactly onto the end of
// the level range, assigns every value its nearest level for each, solves the least-squares step
// (and offset) for those levels, and keeps the candidate whose least-squares error (computed from
// the sums) is lowest. The error is unweighted: it is what the tests' RMSE measures. On Gaussian
// weights this gives 2-12% less RMSE than llama.cpp's quantizers without an imatrix (see
// tests/quant_roundtrip_test.cpp); cost is roughly 40-120 ns per weight on one core.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace straw::quant {

// Round to nearest with ties to even, as an int (llama.cpp's nearest_int semantics). Valid for
// |x| < 2^22, which covers every quant level and scale code. Adding 1.5 * 2^23 places x in a binade
// whose unit in the last place is 1, so the float addition itself does the rounding (the default
// round-to-nearest-even mode); the difference of the two bit patterns is then the integer.
// Non-finite or huge inputs give some int (unsigned arithmetic: never undefined behaviour).
inline int nearest_int(float x) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return static_cast<int32_t>(std::bit_cast<uint32_t>(x + kMagic) -
                              std::bit_cast<uint32_t>(kMagic));
}

inline int clamp_int(int v, int lo, int hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// floor(v) clamped to 0..hi, for v >= 0 as in the legacy reference quantizers' (int)(v + 0.5)
// rounding; NaN gives 0 (a plain float->int cast of NaN would be undefined).
inline int floor_level(float v, int hi) {
  if (!(v > 0.0f)) return 0;
  if (v >= static_cast<float>(hi)) return hi;
  return static_cast<int>(v);
}

// roundf(v) (ties away from zero) clamped to lo..hi; NaN gives 0. Truncation plus a look at the
// exact remainder (v - trunc(v) is exact in float), which avoids a libm call.
inline int round_level(float v, int lo, int hi) {
  if (!(v >= static_cast<float>(lo))) return std::isnan(v) ? 0 : lo;
  if (!(v <= static_cast<float>(hi))) return hi;
  const int t = static_cast<int>(v);
  const float frac = v - static_cast<float>(t);
  return t + (frac >= 0.5f ? 1 : 0) - (frac <= -0.5f ? 1 : 0);
}

// The magnitude and signed value of the element of largest magnitude (the first one on ties, as
// llama.cpp's reference quantizers pick it).
struct Extreme {
  float amax;
  float value;
};

inline Extreme extreme(const float* x, int n) {
  Extreme e{0.0f, 0.0f};
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (a > e.amax) e = {a, x[i]};
  }
  return e;
}

// Affine fit x ≈ scale * q - min with q in 0..nmax, scale >= 0 and min >= 0 (the K-quant mins are
// unsigned and subtracted, so the lowest representable value is never above 0).
struct AffineFit {
  float scale;
  float min;
};
AffineFit fit_affine(const float* x, int n, int nmax);

// Symmetric fit x ≈ scale * q with q in qmin..qmax (qmin < 0 < qmax); the scale may be negative
// (qmin = -qmax - 1, so the sign decides which end gets the extra level).
float fit_symmetric(const float* x, int n, int qmin, int qmax);

// Fit x ≈ scale * kIQ4Values[q] (q 0..15); the scale may be negative (the table is asymmetric).
float fit_iq4(const float* x, int n);

// Index of the kIQ4Values level nearest to v (in level units).
int iq4_nearest(float v);

// Squared error of x against scale * kIQ4Values[nearest], writing the chosen indices to q.
float iq4_assign(const float* x, int n, float scale, int8_t* q);

// ---- whole super-blocks -------------------------------------------------------------------------
// A super-block is ngroups groups of glen values (ngroups * glen <= 256). The per-group fits give
// scales (and mins); an fp16 super-scale maps the largest of them to code_max; each group's integer
// code is then the rounded ratio, refined by trying the neighbouring codes (±1) and keeping the one
// whose levels, recomputed against the stored fp16 super-scale, give the least squared error.
// Where the super-scale is an fp16 subnormal (tiny weights; its relative spacing is then 2^-10 or
// coarser), the neighbouring fp16 values are tried too and the least total error wins.

// Affine (Q2_K, Q4_K, Q5_K): value = (d * sc) * q - (dmin * m), q 0..nmax, sc and m 0..code_max.
struct AffineSuperBlock {
  uint16_t d, dmin;  // fp16
  uint8_t sc[16], m[16];
  uint8_t q[256];
};
void quantize_affine(const float* x, int ngroups, int glen, int nmax, int code_max,
                     AffineSuperBlock& out);

// Signed scale codes sc (-code_max..code_max) times an fp16 d: value = (d * sc) * level, where q
// holds the level itself (symmetric: Q3_K, Q6_K) or an index into kIQ4Values (IQ4_XS).
struct ScaledSuperBlock {
  uint16_t d;  // fp16
  int sc[16];
  int8_t q[256];
};
void quantize_symmetric(const float* x, int ngroups, int glen, int qmin, int qmax, int code_max,
                        ScaledSuperBlock& out);
void quantize_iq4(const float* x, int ngroups, int glen, int code_max, ScaledSuperBlock& out);

}  // namespace straw::quant
