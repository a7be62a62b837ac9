// fp16 / bf16 conversions (quant/f16.h) against independent computations: the binary16 value
// formula, nearest-value searches over all halves, and exact ties.
//
// (Checked once, outside this suite, against ggml's own converters over all 2^32 float inputs:
// identical results for fp32 -> fp16 and fp32 -> bf16, and for all 65536 fp16 -> fp32.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "quant/f16.h"

namespace straw::quant {
namespace {

static_assert(fp32_to_fp16(1.0f) == 0x3C00 && fp16_to_fp32(0xC000) == -2.0f);
static_assert(fp32_to_bf16(1.0f) == 0x3F80 && bf16_to_fp32(0x4049) == 3.140625f);

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The binary16 value from its definition: (-1)^s * 2^(e-15) * 1.m, or 2^-14 * 0.m when e = 0.
double half_value(uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v;
  if (e == 31)
    v = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else if (e == 0)
    v = std::ldexp(m, -24);
  else
    v = std::ldexp(1024 + m, e - 25);
  return s ? -v : v;
}

bool half_is_nan(uint16_t h) {
  return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
}

// Nearest binary16 to x by search over the 31744 finite non-negative halves (their values grow
// with their bit patterns), ties to the even pattern; |x| >= 65520 (halfway past the largest
// finite half) is infinity.
uint16_t nearest_half(double x) {
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(x);
  if (a >= 65520.0) return sign | 0x7C00;
  int lo = 0, hi = 0x7BFF;  // invariant: value(lo) <= a < value(hi) or hi is the top
  if (a >= half_value(0x7BFF)) return sign | 0x7BFF;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (half_value(static_cast<uint16_t>(mid)) <= a)
      lo = mid;
    else
      hi = mid;
  }
  const double dl = a - half_value(static_cast<uint16_t>(lo));
  const double dh = half_value(static_cast<uint16_t>(hi)) - a;
  int r = dl < dh ? lo : (dh < dl ? hi : (lo % 2 == 0 ? lo : hi));
  return static_cast<uint16_t>(sign | r);
}

TEST(QuantF16, AllHalvesConvertToTheirValueAndBack) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<uint16_t>(i);
    const float f = fp16_to_fp32(h);
    if (half_is_nan(h)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << i;
      const uint16_t back = fp32_to_fp16(f);
      ASSERT_TRUE(half_is_nan(back)) << std::hex << i;
      ASSERT_EQ(back & 0x8000, h & 0x8000) << std::hex << i;
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), half_value(h)) << std::hex << i;
    ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << i;  // -0 stays -0
    ASSERT_EQ(fp32_to_fp16(f), h) << std::hex << i;
  }
}

TEST(QuantF16, TiesRoundToEvenAndNeighboursRoundToNearest) {
  // For every pair of adjacent finite halves (normal and subnormal, both signs): the exact
  // midpoint goes to the even one, one float ulp either side goes to the nearer one.
  for (uint32_t i = 0; i < 0x7BFF; ++i) {
    for (const uint32_t sign : {0u, 0x8000u}) {
      const auto lo = static_cast<uint16_t>(i | sign), hi = static_cast<uint16_t>((i + 1) | sign);
      const float mid = static_cast<float>((half_value(lo) + half_value(hi)) / 2);  // exact
      ASSERT_EQ(static_cast<double>(mid), (half_value(lo) + half_value(hi)) / 2);
      ASSERT_EQ(fp32_to_fp16(mid), i % 2 == 0 ? lo : hi) << std::hex << i;
      const float toward_lo = std::nextafter(mid, static_cast<float>(half_value(lo)));
      const float toward_hi = std::nextafter(mid, static_cast<float>(half_value(hi)));
      ASSERT_EQ(fp32_to_fp16(toward_lo), lo) << std::hex << i;
      ASSERT_EQ(fp32_to_fp16(toward_hi), hi) << std::hex << i;
    }
  }
}

TEST(QuantF16, OverflowUnderflowAndSpecials) {
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7BFF);
  EXPECT_EQ(fp32_to_fp16(std::nextafter(65520.0f, 0.0f)), 0x7BFF);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7C00);  // the tie with 65536 goes to the even pattern: inf
  EXPECT_EQ(fp32_to_fp16(-1e10f), 0xFC00);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::max()), 0x7C00);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(fp32_to_fp16(-std::numeric_limits<float>::infinity()), 0xFC00);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // tie with 0: even
  EXPECT_EQ(fp32_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(-std::ldexp(1.0f, -26)), 0x8000);  // -0
  EXPECT_EQ(fp32_to_fp16(std::ldexp(3.0f, -25)), 0x0002);   // 1.5 units: tie to even 2
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1023.5f, -24)), 0x0400);  // rounds up into the normals
  const uint16_t n = fp32_to_fp16(-std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(half_is_nan(n));
  EXPECT_EQ(n & 0x8000, 0x8000);
  EXPECT_TRUE(half_is_nan(fp32_to_fp16(float_of(0x7F800001))));  // signalling NaN input
}

TEST(QuantF16, RandomFloatsMatchTheNearestHalf) {
  std::mt19937 rng(99);
  for (int i = 0; i < 200000; ++i) {
    // Exponents across the whole half range and beyond, random mantissas and signs.
    const int e = static_cast<int>(rng() % 50) - 30;
    const float x = std::ldexp(1.0f + static_cast<float>(rng() % (1u << 23)) / (1u << 23), e) *
                    (rng() % 2 ? -1.0f : 1.0f);
    ASSERT_EQ(fp32_to_fp16(x), nearest_half(x)) << x;
  }
}

TEST(QuantBF16, AllPatternsRoundTrip) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto b = static_cast<uint16_t>(i);
    const float f = bf16_to_fp32(b);
    ASSERT_EQ(bits_of(f), i << 16);
    if (std::isnan(f)) {
      const uint16_t back = fp32_to_bf16(f);
      ASSERT_TRUE(std::isnan(bf16_to_fp32(back))) << std::hex << i;
      ASSERT_EQ(back & 0x40, 0x40) << std::hex << i;  // quiet
      ASSERT_EQ(back & 0x8000, i & 0x8000) << std::hex << i;
    } else {
      ASSERT_EQ(fp32_to_bf16(f), b) << std::hex << i;
    }
  }
}

TEST(QuantBF16, RoundsToNearestEven) {
  // Reference: the two bf16 neighbours of x by truncation, compared in double.
  std::mt19937 rng(5);
  for (int i = 0; i < 500000; ++i) {
    uint32_t u = rng();
    if (i % 4 == 0) u = (u & 0xFFFF0000u) | 0x8000u;  // exact ties
    const float x = float_of(u);
    if (std::isnan(x) || std::isinf(x)) continue;
    const uint32_t t = u >> 16;
    const double lo = bf16_to_fp32(static_cast<uint16_t>(t));
    // Past the largest finite bf16 the next step would be 2^128 (which becomes infinity).
    const double hi = ((t + 1) & 0x7FFF) == 0x7F80 ? std::copysign(std::ldexp(1.0, 128), x)
                                                   : bf16_to_fp32(static_cast<uint16_t>(t + 1));
    const double dl = std::fabs(x - lo), dh = std::fabs(hi - x);
    const uint32_t want = dl < dh ? t : (dh < dl ? t + 1 : (t % 2 == 0 ? t : t + 1));
    ASSERT_EQ(fp32_to_bf16(x), want) << std::hex << u;
  }
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to inf
  EXPECT_EQ(fp32_to_bf16(float_of(0x00008000)), 0x0000);               // subnormal tie: even
  EXPECT_EQ(fp32_to_bf16(float_of(0x00018000)), 0x0002);
  EXPECT_EQ(fp32_to_bf16(float_of(0x7F800001)), 0x7FC0);  // signalling NaN -> quiet
  EXPECT_EQ(fp32_to_bf16(float_of(0xFF800001)), 0xFFC0);
}

}  // namespace
}  // namespace straw::quant
