#include "quant/fit.h"

#include <cmath>
#include <limits>

#include "quant/f16.h"
#include "quant/iq4_nl.h"

namespace straw::quant {
namespace {

// Candidate steps are tried for targets end ± kSpread around the level-range end that the extreme
// value would map to, in kSteps equal increments on each side.
constexpr int kSteps = 10;
constexpr float kSpread = 1.0f;

constexpr float kInf = std::numeric_limits<float>::infinity();

// Nearest IQ4 level by table: v is cut into half-unit buckets over [-128, 128) (values outside
// clamp to the end buckets, whose nearest levels are the table's ends). Every midpoint between
// consecutive levels is a multiple of 0.5, so no bucket straddles one; a value exactly on a
// midpoint takes the upper level.
struct IQ4Lut {
  uint8_t idx[512];
  constexpr IQ4Lut() : idx() {
    for (int b = 0; b < 512; ++b) {
      const float center = static_cast<float>(b - 256) * 0.5f + 0.25f;
      int k = 0;
      while (k < 15 && center > 0.5f * (kIQ4Values[k] + kIQ4Values[k + 1])) ++k;
      idx[b] = static_cast<uint8_t>(k);
    }
  }
};
constexpr IQ4Lut kIQ4Lut;

// Levels of one group against the affine pair (dl, ml) and their squared error; the value
// expression is exactly the dequantizer's.
float affine_levels(const float* x, int n, float dl, float ml, int nmax, uint8_t* q) {
  const float inv = dl > 0.0f ? 1.0f / dl : 0.0f;
  float err = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = dl > 0.0f ? clamp_int(nearest_int((x[i] + ml) * inv), 0, nmax) : 0;
    q[i] = static_cast<uint8_t>(l);
    const float e = dl * static_cast<float>(l) - ml - x[i];
    err += e * e;
  }
  return err;
}

// Levels of one group against the symmetric step dl and their squared error.
float symmetric_levels(const float* x, int n, float dl, int qmin, int qmax, int8_t* q) {
  const float inv = dl != 0.0f ? 1.0f / dl : 0.0f;
  float err = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = clamp_int(nearest_int(x[i] * inv), qmin, qmax);
    q[i] = static_cast<int8_t>(l);
    const float e = dl * static_cast<float>(l) - x[i];
    err += e * e;
  }
  return err;
}

// The integer code nearest to value / step, clamped to lo..hi (0, clamped, when step is 0).
int code_of(float value, float step, int lo, int hi) {
  if (step == 0.0f) return clamp_int(0, lo, hi);
  return clamp_int(nearest_int(value / step), lo, hi);
}

}  // namespace

AffineFit fit_affine(const float* x, int n, int nmax) {
  float lo = x[0], hi = x[0];
  float s_x = 0.0f, s_xx = 0.0f;
  for (int i = 0; i < n; ++i) {
    lo = std::fmin(lo, x[i]);
    hi = std::fmax(hi, x[i]);
    s_x += x[i];
    s_xx += x[i] * x[i];
  }
  if (lo > 0.0f) lo = 0.0f;  // the offset can only lower values
  if (!(hi > lo)) return {0.0f, -lo};
  AffineFit best{(hi - lo) / static_cast<float>(nmax), -lo};
  double best_err = kInf;
  for (int k = -kSteps; k <= kSteps; ++k) {
    const float target = static_cast<float>(nmax) + kSpread * static_cast<float>(k) / kSteps;
    const float iscale = target / (hi - lo);
    // Level sums are small integers (exact); the x sums are floats over at most 32 values.
    int s_q = 0, s_qq = 0;
    float s_xq = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = clamp_int(nearest_int(iscale * (x[i] - lo)), 0, nmax);
      s_q += l;
      s_qq += l * l;
      s_xq += x[i] * static_cast<float>(l);
    }
    // Least squares for x ≈ a * q + b; b is the negated min, so it may not be positive.
    const double det = static_cast<double>(n) * s_qq - static_cast<double>(s_q) * s_q;
    if (!(det > 0)) continue;
    double a = (static_cast<double>(n) * s_xq - static_cast<double>(s_q) * s_x) / det;
    double b = (static_cast<double>(s_qq) * s_x - static_cast<double>(s_q) * s_xq) / det;
    if (b > 0) {
      b = 0;
      a = s_xq / static_cast<double>(s_qq);
    }
    if (!(a > 0)) continue;
    // Sum of (a q + b - x)^2, expanded into the sums.
    const double err =
        s_xx + a * a * s_qq + n * b * b + 2 * a * b * s_q - 2 * a * s_xq - 2 * b * s_x;
    if (err < best_err) {
      best_err = err;
      best = {static_cast<float>(a), static_cast<float>(-b)};
    }
  }
  return best;
}

float fit_symmetric(const float* x, int n, int qmin, int qmax) {
  const Extreme ext = extreme(x, n);
  if (ext.amax == 0.0f) return 0.0f;
  float best = ext.value / static_cast<float>(qmin);
  // With the least-squares scale s = sum(xq) / sum(qq) the squared error is
  // sum(xx) - sum(xq)^2 / sum(qq): the best candidate maximises sum(xq)^2 / sum(qq).
  double best_score = -1.0;
  for (const int end : {qmin, qmax}) {
    const float sign = end < 0 ? -1.0f : 1.0f;
    for (int k = -kSteps; k <= kSteps; ++k) {
      const float target =
          static_cast<float>(end) + sign * kSpread * static_cast<float>(k) / kSteps;
      const float iscale = target / ext.value;
      float s_xq = 0.0f;
      int s_qq = 0;
      for (int i = 0; i < n; ++i) {
        const int l = clamp_int(nearest_int(iscale * x[i]), qmin, qmax);
        s_xq += x[i] * static_cast<float>(l);
        s_qq += l * l;
      }
      if (s_qq == 0) continue;
      const double score = static_cast<double>(s_xq) * s_xq / s_qq;
      if (score > best_score) {
        best_score = score;
        best = static_cast<float>(s_xq / static_cast<double>(s_qq));
      }
    }
  }
  return best;
}

int iq4_nearest(float v) {
  const float t = 2.0f * v + 256.0f;
  const int b = t >= 0.0f ? (t < 511.0f ? static_cast<int>(t) : 511) : 0;  // NaN: bucket 0
  return kIQ4Lut.idx[b];
}

float iq4_assign(const float* x, int n, float scale, int8_t* q) {
  const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
  float err = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int k = iq4_nearest(x[i] * inv);
    q[i] = static_cast<int8_t>(k);
    const float e = scale * static_cast<float>(kIQ4Values[k]) - x[i];
    err += e * e;
  }
  return err;
}

float fit_iq4(const float* x, int n) {
  const Extreme ext = extreme(x, n);
  if (ext.amax == 0.0f) return 0.0f;
  // The table's ends are -127 and +113: try mapping the extreme near either end, within ±10%,
  // scoring each assignment by its least-squares error as fit_symmetric does.
  float best = ext.value / static_cast<float>(kIQ4Values[0]);
  double best_score = -1.0;
  for (const int end : {static_cast<int>(kIQ4Values[0]), static_cast<int>(kIQ4Values[15])}) {
    for (int k = -kSteps; k <= kSteps; ++k) {
      const float target = static_cast<float>(end) * (1.0f + 0.01f * static_cast<float>(k));
      const float iscale = target / ext.value;
      float s_xv = 0.0f;
      int s_vv = 0;
      for (int i = 0; i < n; ++i) {
        const int v = kIQ4Values[iq4_nearest(iscale * x[i])];
        s_xv += x[i] * static_cast<float>(v);
        s_vv += v * v;  // > 0: no level is 0
      }
      const double score = static_cast<double>(s_xv) * s_xv / s_vv;
      if (score > best_score) {
        best_score = score;
        best = static_cast<float>(s_xv / static_cast<double>(s_vv));
      }
    }
  }
  return best;
}

namespace {

// fp16 candidates for a super-scale whose ideal value is v >= 0: the nearest fp16 and, where that
// is subnormal (relative spacing 2^-10 and coarser, up to 100% for the smallest), also the two
// fp16 values either side: the products of a coarse super-scale and the integer codes then cover
// the wanted group scales better, and the least total error decides.
int scale_candidates(float v, uint16_t* out) {
  const uint16_t h = fp32_to_fp16(v);
  out[0] = h;
  int n = 1;
  if ((h & 0x7C00) == 0 && h != 0) {
    for (int k = -2; k <= 2; ++k) {
      const int c = h + k;
      if (k != 0 && c >= 1 && c <= 0x400) out[n++] = static_cast<uint16_t>(c);
    }
  }
  return n;
}

// Codes and levels of every group for the super-scales already in sb; returns the total error.
float refine_affine(const float* x, int ngroups, int glen, int nmax, int code_max,
                    const AffineFit* fits, AffineSuperBlock& sb) {
  const float d = fp16_to_fp32(sb.d);
  const float dmin = fp16_to_fp32(sb.dmin);
  uint8_t q[256];
  float total = 0.0f;
  for (int g = 0; g < ngroups; ++g) {
    const float* xg = x + g * glen;
    const int sc0 = code_of(fits[g].scale, d, 0, code_max);
    const int m0 = code_of(fits[g].min, dmin, 0, code_max);
    float best_err = kInf;
    for (int sc = sc0 - 1; sc <= sc0 + 1; ++sc) {
      if (sc < 0 || sc > code_max) continue;
      for (int m = m0 - 1; m <= m0 + 1; ++m) {
        if (m < 0 || m > code_max) continue;
        const float dl = d * static_cast<float>(sc);
        const float ml = dmin * static_cast<float>(m);
        const float err = affine_levels(xg, glen, dl, ml, nmax, q);
        if (err < best_err) {
          best_err = err;
          sb.sc[g] = static_cast<uint8_t>(sc);
          sb.m[g] = static_cast<uint8_t>(m);
          for (int i = 0; i < glen; ++i) sb.q[g * glen + i] = q[i];
        }
      }
    }
    total += best_err;
  }
  return total;
}

// Signed codes and levels of every group for the super-scale already in sb; returns the total
// error. levels(xg, glen, dl, q) assigns a group's levels for the step dl and returns their error.
template <class Levels>
float refine_scaled(const float* x, int ngroups, int glen, int code_max, const float* scales,
                    Levels levels, ScaledSuperBlock& sb) {
  const float d = fp16_to_fp32(sb.d);
  int8_t q[256];
  float total = 0.0f;
  for (int g = 0; g < ngroups; ++g) {
    const float* xg = x + g * glen;
    const int sc0 = code_of(scales[g], d, -code_max, code_max);
    float best_err = kInf;
    for (int sc = sc0 - 1; sc <= sc0 + 1; ++sc) {
      if (sc < -code_max || sc > code_max) continue;
      const float err = levels(xg, glen, d * static_cast<float>(sc), q);
      if (err < best_err) {
        best_err = err;
        sb.sc[g] = sc;
        for (int i = 0; i < glen; ++i) sb.q[g * glen + i] = q[i];
      }
    }
    total += best_err;
  }
  return total;
}

// The signed-scale super-block: fit(xg, glen) gives each group's scale, levels as above.
template <class Fit, class Levels>
void quantize_scaled(const float* x, int ngroups, int glen, int code_max, Fit fit, Levels levels,
                     ScaledSuperBlock& out) {
  float scales[16];
  float amax = 0.0f;
  for (int g = 0; g < ngroups; ++g) {
    scales[g] = fit(x + g * glen, glen);
    amax = std::fmax(amax, std::fabs(scales[g]));
  }
  uint16_t dc[5];
  const int nd = scale_candidates(amax / static_cast<float>(code_max), dc);
  float best = kInf;
  ScaledSuperBlock trial;
  for (int i = 0; i < nd; ++i) {
    trial.d = dc[i];
    const float err = refine_scaled(x, ngroups, glen, code_max, scales, levels, trial);
    if (err < best) {
      best = err;
      out = trial;
    }
  }
}

}  // namespace

void quantize_affine(const float* x, int ngroups, int glen, int nmax, int code_max,
                     AffineSuperBlock& out) {
  AffineFit fits[16];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int g = 0; g < ngroups; ++g) {
    fits[g] = fit_affine(x + g * glen, glen, nmax);
    max_scale = std::fmax(max_scale, fits[g].scale);
    max_min = std::fmax(max_min, fits[g].min);
  }
  uint16_t dc[5], mc[5];
  const int nd = scale_candidates(max_scale / static_cast<float>(code_max), dc);
  const int nm = scale_candidates(max_min / static_cast<float>(code_max), mc);
  float best = kInf;
  AffineSuperBlock trial;
  for (int i = 0; i < nd; ++i) {
    for (int j = 0; j < nm; ++j) {
      trial.d = dc[i];
      trial.dmin = mc[j];
      const float err = refine_affine(x, ngroups, glen, nmax, code_max, fits, trial);
      if (err < best) {
        best = err;
        out = trial;
      }
    }
  }
}

void quantize_symmetric(const float* x, int ngroups, int glen, int qmin, int qmax, int code_max,
                        ScaledSuperBlock& out) {
  quantize_scaled(
      x, ngroups, glen, code_max,
      [&](const float* xg, int n) { return fit_symmetric(xg, n, qmin, qmax); },
      [&](const float* xg, int n, float dl, int8_t* q) {
        return symmetric_levels(xg, n, dl, qmin, qmax, q);
      },
      out);
}

void quantize_iq4(const float* x, int ngroups, int glen, int code_max, ScaledSuperBlock& out) {
  quantize_scaled(x, ngroups, glen, code_max, fit_iq4, iq4_assign, out);
}

}  // namespace straw::quant
