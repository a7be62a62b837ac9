// Block layouts and dequantizers, checked against the format definitions:
//  - every implemented format agrees with the type table (block size, bytes) and dispatches;
//  - hand-built blocks (fields set one by one) dequantize to values worked out by hand from the
//    definitions (the arithmetic is in the comments);
//  - blocks with random fields dequantize bit for bit like the independent per-element reader in
//    quant_reference.h;
//  - the row API's errors.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "quant/dispatch.h"
#include "quant/quant.h"
#include "quant_reference.h"
#include "straw/error.h"

namespace straw::quant {
namespace {

using testing::element;

constexpr uint16_t kHalfQuarter = 0x3400;  // 0.25
constexpr uint16_t kHalfHalf = 0x3800;     // 0.5
constexpr uint16_t kHalfOne = 0x3C00;      // 1.0
constexpr uint16_t kHalfTwo = 0x4000;      // 2.0
constexpr uint16_t kHalfMinusOne = 0xBC00;

// Dequantizes one block through the runtime API.
template <class F>
std::vector<float> dq(const typename F::Block& b) {
  std::vector<float> y(F::kBlockSize);
  dequantize_row(F::kType, &b, y.data(), F::kBlockSize);
  return y;
}

template <class B>
B zeroed() {
  B b;
  std::memset(&b, 0, sizeof b);
  return b;
}

TEST(QuantTable, EveryImplementedFormatMatchesTheTypeTable) {
  int implemented = 0;
  for (uint32_t id = 0; id < 64; ++id) {
    const TypeInfo* ti = find_type(id);
    if (!ti) continue;
    if (!ti->supported) {
      EXPECT_THROW(dispatch(ti->type, [](auto) {}), Error) << ti->name;
      EXPECT_FALSE(can_quantize(ti->type)) << ti->name;
      continue;
    }
    ++implemented;
    dispatch(ti->type, [&]<class F>(FormatTag<F>) {
      EXPECT_EQ(F::kType, ti->type) << ti->name;
      EXPECT_EQ(F::kBlockSize, ti->block_size) << ti->name;
      EXPECT_EQ(sizeof(typename F::Block), ti->type_size) << ti->name;
      EXPECT_EQ(has_quantize<F>, can_quantize(ti->type)) << ti->name;
    });
  }
  EXPECT_EQ(implemented, 17);
}

TEST(QuantTable, UnsupportedTypesNameThemselves) {
  try {
    dispatch(Type::IQ2_XXS, [](auto) {});
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("IQ2_XXS"), std::string::npos) << e.what();
  }
  std::vector<float> y(256);
  std::vector<uint8_t> src(1024);
  EXPECT_THROW(dequantize_row(Type::IQ3_S, src.data(), y.data(), 256), Error);
  EXPECT_THROW(quantize_row(Type::TQ1_0, y.data(), src.data(), 256), Error);
}

TEST(QuantRowApi, RejectsBadLengthsAndAlignment) {
  alignas(8) uint8_t buf[1024] = {};
  std::vector<float> y(512);
  EXPECT_THROW(dequantize_row(Type::Q4_K, buf, y.data(), 100), Error);
  EXPECT_THROW(dequantize_row(Type::Q8_0, buf, y.data(), -32), Error);
  EXPECT_THROW(quantize_row(Type::Q6_K, y.data(), buf, 128), Error);
  EXPECT_THROW(dequantize_row(Type::Q8_K, buf + 2, y.data(), 256),
               Error);  // needs 4-byte alignment
  EXPECT_THROW(dequantize_row(Type::Q4_0, buf + 1, y.data(), 32), Error);
  EXPECT_NO_THROW(dequantize_row(Type::Q4_0, buf + 2, y.data(), 64));
  EXPECT_NO_THROW(dequantize_row(Type::Q4_K, buf, y.data(), 0));
  EXPECT_TRUE(can_quantize(Type::Q4_K));
  EXPECT_TRUE(can_quantize(Type::IQ4_XS));
  EXPECT_TRUE(can_quantize(Type::Q8_K));
  EXPECT_FALSE(can_quantize(Type::IQ1_M));
}

// ---- hand-built blocks ------------------------------------------------------------------------

TEST(QuantHandBuilt, PlainFloats) {
  BlockF16 h{0xC000};  // sign 1, exponent 16 (bias 15), mantissa 0: -2
  EXPECT_EQ(dq<F16>(h)[0], -2.0f);
  BlockBF16 b{0x4049};  // 0x40490000 = 3.140625
  EXPECT_EQ(dq<BF16>(b)[0], 3.140625f);
  BlockF32 f{-7.25f};
  EXPECT_EQ(dq<F32>(f)[0], -7.25f);
}

TEST(QuantHandBuilt, Q4_0) {
  auto b = zeroed<BlockQ4_0>();
  b.d = kHalfHalf;
  b.qs[0] = 0x9A;   // element 0: 0xA - 8 = 2; element 16: 9 - 8 = 1
  b.qs[15] = 0x0F;  // element 15: 15 - 8 = 7; element 31: 0 - 8 = -8
  const auto y = dq<Q4_0>(b);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[16], 0.5f);
  EXPECT_EQ(y[15], 3.5f);
  EXPECT_EQ(y[31], -4.0f);
  EXPECT_EQ(y[1], -4.0f);  // nibble 0 -> -8 * 0.5
}

TEST(QuantHandBuilt, Q4_1) {
  auto b = zeroed<BlockQ4_1>();
  b.d = kHalfQuarter;
  b.m = kHalfMinusOne;
  b.qs[2] = 0x3C;  // element 2: 12 * 0.25 - 1 = 2; element 18: 3 * 0.25 - 1 = -0.25
  const auto y = dq<Q4_1>(b);
  EXPECT_EQ(y[2], 2.0f);
  EXPECT_EQ(y[18], -0.25f);
  EXPECT_EQ(y[0], -1.0f);
}

TEST(QuantHandBuilt, Q5_0) {
  auto b = zeroed<BlockQ5_0>();
  b.d = kHalfHalf;
  b.qh[0] = 0x02;  // bit 1: element 1 has its fifth bit
  b.qh[2] = 0x02;  // bit 17: element 17 has its fifth bit
  b.qs[1] = 0x21;  // element 1: (1 + 16) - 16 = 1; element 17: (2 + 16) - 16 = 2
  b.qs[3] = 0x21;  // element 3: 1 - 16 = -15; element 19: 2 - 16 = -14
  const auto y = dq<Q5_0>(b);
  EXPECT_EQ(y[1], 0.5f);
  EXPECT_EQ(y[17], 1.0f);
  EXPECT_EQ(y[3], -7.5f);
  EXPECT_EQ(y[19], -7.0f);
}

TEST(QuantHandBuilt, Q5_1) {
  auto b = zeroed<BlockQ5_1>();
  b.d = kHalfOne;
  b.m = kHalfHalf;
  b.qh[3] = 0x80;   // bit 31: element 31
  b.qs[15] = 0x70;  // element 15: 0 * 1 + 0.5; element 31: (7 + 16) * 1 + 0.5
  const auto y = dq<Q5_1>(b);
  EXPECT_EQ(y[15], 0.5f);
  EXPECT_EQ(y[31], 23.5f);
}

TEST(QuantHandBuilt, Q8Family) {
  auto a = zeroed<BlockQ8_0>();
  a.d = kHalfQuarter;
  a.qs[5] = -7;
  EXPECT_EQ(dq<Q8_0>(a)[5], -1.75f);
  auto b = zeroed<BlockQ8_1>();
  b.d = kHalfTwo;
  b.s = 0x7C00;  // s does not take part in dequantization
  b.qs[31] = 100;
  EXPECT_EQ(dq<Q8_1>(b)[31], 200.0f);
  auto c = zeroed<BlockQ8K>();
  c.d = -0.5f;
  c.qs[200] = 3;
  EXPECT_EQ(dq<Q8K>(c)[200], -1.5f);
}

TEST(QuantHandBuilt, Q2K) {
  auto b = zeroed<BlockQ2K>();
  b.d = kHalfOne;
  b.dmin = kHalfHalf;
  // Element 213 = 128*1 + 32*2 + 16*1 + 5: byte 32 + 16 + 5 = 53, bits 4-5; group 213/16 = 13.
  b.qs[53] = 0x20;      // bits 4-5 = 2
  b.scales[13] = 0x23;  // scale 3, min 2
  b.scales[2] = 0x51;   // group 2 (elements 32..47): scale 1, min 5
  b.qs[7] = 0xC0;       // element 96 + 7 = 103 (plane 3, group 6): 3; element 39 (plane 1): 0
  b.scales[6] = 0x04;   // group 6: scale 4, min 0
  const auto y = dq<Q2K>(b);
  EXPECT_EQ(y[213], 1.0f * 3 * 2 - 0.5f * 2);  // 5
  EXPECT_EQ(y[39], 0.0f - 0.5f * 5);           // -2.5
  EXPECT_EQ(y[103], 4.0f * 3);                 // 12
}

TEST(QuantHandBuilt, Q3K) {
  auto b = zeroed<BlockQ3K>();
  b.d = kHalfHalf;
  // Element 77 = 32*2 + 13: half 0, plane 2, qs[13] bits 4-5, hmask[13] bit 2, group 4.
  // Element 13: plane 0, qs[13] bits 0-1, hmask[13] bit 0, group 0.
  b.qs[13] = 0x32;     // element 77: 3; element 13: 2
  b.hmask[13] = 0x01;  // element 13's high bit set (no -4); element 77's clear (-4)
  b.scales[0] = 0x0F;  // group 0: low4 15, hi2 (scales[8] bits 0-1) 0 -> 15 - 32 = -17
  b.scales[4] = 0xA5;  // group 4: low4 5; group 12: low4 0xA
  b.scales[8] = 0x48;  // group 4: bits 2-3 = 2 -> 5 + 32 - 32 = 5; group 12: bits 6-7 = 1
  // Element 200 = 128 + 64 + 8: half 1, plane 2, qs[40] bits 4-5, hmask[8] bit 6, group 12:
  // 10 + 16 - 32 = -6.
  b.qs[40] = 0x10;
  b.hmask[8] = 0x40;
  const auto y = dq<Q3K>(b);
  EXPECT_EQ(y[77], 0.5f * 5 * (3 - 4));    // -2.5
  EXPECT_EQ(y[13], 0.5f * -17 * 2);        // -17
  EXPECT_EQ(y[200], 0.5f * -6 * 1);        // -3
  EXPECT_EQ(y[14], 0.5f * -17 * (0 - 4));  // 34: zero bits, high bit clear
}

// Scale field of the Q4_K / Q5_K hand-built blocks: sub-block 1 scale 10 min 3; sub-block 6
// scale 43 (0b10'1011) min 21 (0b01'0101).
void set_k4_scales(uint8_t* s) {
  s[1] = 10;
  s[5] = 3;
  s[10] = 0x5B;   // low nibble: low 4 bits of scale 6 (11); high nibble: low 4 bits of min 6 (5)
  s[2] = 2 << 6;  // top bits of byte 2 = high 2 bits of scale 6
  s[6] = 1 << 6;  // top bits of byte 6 = high 2 bits of min 6
}

TEST(QuantHandBuilt, Q4K) {
  auto b = zeroed<BlockQ4K>();
  b.d = kHalfHalf;
  b.dmin = kHalfQuarter;
  set_k4_scales(b.scales);
  b.qs[8] = 0x70;    // element 32 + 8 = 40 (sub-block 1, high nibble of chunk 0): 7
  b.qs[104] = 0x0C;  // element 192 + 8 = 200 (sub-block 6, low nibble of chunk 3): 12
  const auto y = dq<Q4K>(b);
  EXPECT_EQ(y[40], 0.5f * 10 * 7 - 0.25f * 3);     // 34.25
  EXPECT_EQ(y[200], 0.5f * 43 * 12 - 0.25f * 21);  // 252.75
  EXPECT_EQ(y[8], 0.0f);  // sub-block 0: scale 0, min 0 (byte 0 and 4 are zero)
  // Sub-block 2: byte 2's low 6 bits are 0, so its scale is 0 whatever its levels.
  EXPECT_EQ(y[64], 0.0f);
}

TEST(QuantHandBuilt, Q5K) {
  auto b = zeroed<BlockQ5K>();
  b.d = kHalfHalf;
  b.dmin = kHalfQuarter;
  set_k4_scales(b.scales);
  b.qs[8] = 0x70;
  b.qs[104] = 0x0C;
  b.qh[8] = 0x42;  // bit 1: element 40's fifth bit (sub-block 1); bit 6: element 200's
  const auto y = dq<Q5K>(b);
  EXPECT_EQ(y[40], 0.5f * 10 * 23 - 0.25f * 3);    // 114.25
  EXPECT_EQ(y[200], 0.5f * 43 * 28 - 0.25f * 21);  // 596.75
}

TEST(QuantHandBuilt, Q6K) {
  auto b = zeroed<BlockQ6K>();
  b.d = kHalfHalf;
  // Element 197 = 128 + 64 + 5: half 1, quarter 2 -> high nibble of ql[64 + 5], qh[32 + 5] bits
  // 4-5.
  b.ql[69] = 0xA0;
  b.qh[37] = 0x20;  // high 2 bits = 2: level 10 + 32 - 32 = 10
  b.scales[12] = -3;
  // Element 37 = 32 + 5: half 0, quarter 1 -> low nibble of ql[32 + 5], qh[5] bits 2-3.
  b.ql[37] = 0x03;
  b.scales[2] = 2;
  const auto y = dq<Q6K>(b);
  EXPECT_EQ(y[197], 0.5f * -3 * 10);  // -15
  EXPECT_EQ(y[37], 0.5f * 2 * -29);   // -29
}

TEST(QuantHandBuilt, IQ4NL) {
  auto b = zeroed<BlockIQ4NL>();
  b.d = kHalfHalf;
  b.qs[4] = 0xF0;  // element 4: index 0 -> -127; element 20: index 15 -> 113
  const auto y = dq<IQ4NL>(b);
  EXPECT_EQ(y[4], -63.5f);
  EXPECT_EQ(y[20], 56.5f);
  EXPECT_EQ(y[0], -63.5f);
}

TEST(QuantHandBuilt, IQ4XS) {
  auto b = zeroed<BlockIQ4XS>();
  b.d = kHalfQuarter;
  // Sub-block 5: scale 40 = 0b10'1000 -> low nibble 8 in the high half of scales_l[2], high bits 2
  // at bits 10-11 of scales_h: multiplier 0.25 * (40 - 32) = 2.
  b.scales_l[2] = 0x80;
  b.scales_h = 2 << 10;
  b.qs[82] = 0x90;  // sub-block 5 byte 2: element 160 + 2 index 0, element 160 + 18 index 9
  const auto y = dq<IQ4XS>(b);
  EXPECT_EQ(y[178], 2.0f * 13);
  EXPECT_EQ(y[162], 2.0f * -127);
  // Sub-block 4 shares scales_l[2] (low nibble 0) and has high bits 0: multiplier 0.25 * -32.
  EXPECT_EQ(y[128], -8.0f * -127);
}

// ---- random fields vs the per-element reader ---------------------------------------------------

uint16_t random_finite_half(std::mt19937& rng) {
  for (;;) {
    const auto h = static_cast<uint16_t>(rng());
    if ((h & 0x7C00) != 0x7C00) return h;
  }
}

template <class B>
void sanitize_scales(B& b, std::mt19937& rng) {
  if constexpr (requires { b.d; }) {
    if constexpr (std::is_same_v<decltype(b.d), float>)
      b.d = std::uniform_real_distribution<float>(-4.0f, 4.0f)(rng);
    else
      b.d = random_finite_half(rng);
  }
  if constexpr (requires { b.dmin; }) b.dmin = random_finite_half(rng);
  if constexpr (requires { b.m; }) b.m = random_finite_half(rng);
  if constexpr (requires { b.s; }) b.s = random_finite_half(rng);
}

template <class F>
void check_against_element_reader(std::mt19937& rng) {
  using Block = typename F::Block;
  constexpr int kBlocks = 64;
  std::vector<Block> blocks(kBlocks);
  auto* bytes = reinterpret_cast<uint8_t*>(blocks.data());
  for (size_t i = 0; i < sizeof(Block) * kBlocks; ++i) bytes[i] = static_cast<uint8_t>(rng());
  for (Block& b : blocks) sanitize_scales(b, rng);
  std::vector<float> y(static_cast<size_t>(kBlocks) * F::kBlockSize);
  dequantize_row(F::kType, blocks.data(), y.data(), static_cast<int64_t>(y.size()));
  for (int bi = 0; bi < kBlocks; ++bi) {
    for (int i = 0; i < F::kBlockSize; ++i) {
      const float want = element(blocks[bi], i);
      const float got = y[static_cast<size_t>(bi) * F::kBlockSize + i];
      ASSERT_EQ(std::memcmp(&want, &got, 4), 0)
          << type_name(F::kType) << " block " << bi << " element " << i << ": " << got << " vs "
          << want;
    }
  }
}

TEST(QuantRandomBlocks, DequantizeMatchesElementReader) {
  std::mt19937 rng(1234);
  for (uint32_t id = 0; id < 64; ++id) {
    const TypeInfo* ti = find_type(id);
    if (!ti || !ti->supported) continue;
    dispatch(ti->type, [&]<class F>(FormatTag<F>) { check_against_element_reader<F>(rng); });
  }
}

}  // namespace
}  // namespace straw::quant
