// The CPU matmul kernels against the reference: every SIMD level this CPU supports (AVX2 is tested
// on AVX-512 machines too, through its kernel table), every tiled type, float types, edge sizes.
//
// Oracles. (1) Kernel level: the exact dot product (double) of the dequantized weights with the
// dequantized int8 activations the kernel was given; the kernels differ from it only by float
// rounding. (2) Backend level: the reference backend (exact dequantized math on float activations),
// within a bound computed from the activation rounding of each 32-element block.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/kernels.h"
#include "quant/formats.h"
#include "quant/quant.h"

namespace {

using straw::cpu::Isa;
using straw::quant::Type;
namespace cpu = straw::cpu;
namespace quant = straw::quant;

const Type kTiledTypes[] = {Type::Q4_0,   Type::Q5_0, Type::Q5_1, Type::Q8_0, Type::IQ4_NL,
                            Type::IQ4_XS, Type::Q4_K, Type::Q5_K, Type::Q6_K};

std::vector<Isa> simd_isas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Amx})
    if (cpu::isa_supported(i)) out.push_back(i);
  return out;
}

int block_size(Type t) {
  return quant::type_info(t).block_size;
}

std::vector<float> random_floats(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// A weight matrix of `rows` rows: quantized random floats (realistic) or random bytes with sane
// fp16 scales (every level and scale bit pattern, e.g. Q8_0 level -128, Q6_K scale -128).
std::vector<uint8_t> random_weight(std::mt19937& rng, Type t, int64_t rows, int64_t n_in,
                                   bool raw_bytes) {
  const size_t rb = quant::row_bytes(t, n_in);
  std::vector<uint8_t> w(rb * rows);
  if (!raw_bytes) {
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<float> f = random_floats(rng, n_in, 0.5f + float(r % 3));
      quant::quantize_row(t, f.data(), w.data() + r * rb, n_in);
    }
    return w;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : w) b = uint8_t(byte(rng));
  std::uniform_real_distribution<float> scale(-0.02f, 0.02f);
  const size_t bb = quant::type_info(t).type_size;
  // Offsets of the fp16 scale fields in each block.
  std::vector<size_t> halves;
  switch (t) {
    case Type::Q5_1:
    case Type::Q4_K:
    case Type::Q5_K:
      halves = {0, 2};
      break;
    case Type::Q6_K:
      halves = {208};
      break;
    default:
      halves = {0};
      break;
  }
  for (size_t off = 0; off < w.size(); off += bb)
    for (size_t h : halves) {
      const uint16_t v = quant::fp32_to_fp16(scale(rng));
      std::memcpy(w.data() + off + h, &v, 2);
    }
  return w;
}

std::vector<uint8_t> tile_weight(const cpu::TileLayout& L, const std::vector<uint8_t>& w, size_t rb,
                                 int64_t rows) {
  std::vector<uint8_t> tiles(cpu::n_tiles(rows) * L.tile_bytes);
  for (int64_t t = 0; t < cpu::n_tiles(rows); ++t)
    cpu::repack_tile(L, w.data() + t * cpu::kTileRows * rb, rb,
                     int(std::min<int64_t>(cpu::kTileRows, rows - t * cpu::kTileRows)),
                     tiles.data() + t * L.tile_bytes);
  return tiles;
}

std::vector<float> dequantize(Type t, const std::vector<uint8_t>& w, int64_t rows, int64_t n_in) {
  std::vector<float> f(rows * n_in);
  const size_t rb = quant::row_bytes(t, n_in);
  for (int64_t r = 0; r < rows; ++r)
    quant::dequantize_row(t, w.data() + r * rb, &f[r * n_in], n_in);
  return f;
}

TEST(CpuFeatures, DescribesTheCpu) {
  EXPECT_TRUE(cpu::isa_supported(Isa::Scalar));
  EXPECT_FALSE(cpu::describe_cpu().empty());
  if (cpu::isa_supported(Isa::Avx512) || cpu::isa_supported(Isa::AvxVnni)) {
    EXPECT_TRUE(cpu::isa_supported(Isa::Avx2));
  }
  EXPECT_TRUE(cpu::isa_supported(cpu::best_isa()));
}

// The prefetch distances: per vendor by default, STRAW_PREFETCH_BYTES="L1[,L2]" over them (rounded
// down to a cache line), malformed or out-of-range values ignored.
TEST(CpuFeatures, PrefetchDistancesFollowTheOverride) {
  const char* saved = std::getenv("STRAW_PREFETCH_BYTES");
  const std::string keep = saved ? saved : "";
  ::unsetenv("STRAW_PREFETCH_BYTES");
  const cpu::PrefetchDistances d = cpu::default_prefetch();
  EXPECT_EQ(d.l1, cpu::cpu_features().intel ? 2048u : 8192u);
  EXPECT_EQ(d.l2, cpu::cpu_features().intel ? 4096u : 0u);
  auto with = [](const char* v) {
    ::setenv("STRAW_PREFETCH_BYTES", v, 1);
    return cpu::default_prefetch();
  };
  EXPECT_EQ(with("1000").l1, 960u);
  EXPECT_EQ(with("1000").l2, 0u);
  EXPECT_EQ(with("0,16384").l1, 0u);
  EXPECT_EQ(with("0,16384").l2, 16384u);
  for (const char* bad : {"abc", "4096,", "4096x", "99999999"}) {
    EXPECT_EQ(with(bad).l1, d.l1) << bad;
    EXPECT_EQ(with(bad).l2, d.l2) << bad;
  }
  if (saved)
    ::setenv("STRAW_PREFETCH_BYTES", keep.c_str(), 1);
  else
    ::unsetenv("STRAW_PREFETCH_BYTES");
}

TEST(CpuActQuant, SimdMatchesTheReferenceBitForBit) {
  std::mt19937 rng(7);
  for (Isa isa : simd_isas()) {
    const cpu::MatKernels* k = cpu::mat_kernels(isa);
    for (int64_t n : {32, 64, 256, 1056}) {
      std::vector<float> x = random_floats(rng, n, 3.0f);
      for (int i = 0; i < 32; ++i) x[i] = 0.0f;    // an all-zero block
      if (n > 64) x[40] = 1e30f, x[41] = -1e-30f;  // extremes in one block
      if (n > 96)
        for (int i = 64; i < 96; ++i) x[i] = float(i % 5) - 2.0f;  // exact ties
      for (cpu::ActParams p : {cpu::ActParams{0, 32},
                               {8, 32},
                               {128, 32},
                               {32, 16},
                               {0, 32, 256},
                               {128, 32, 256},
                               {32, 16, 256}}) {
        const cpu::ActLayout a = cpu::act_layout(n);
        std::vector<uint8_t> ref(a.stride), simd(a.stride);
        cpu::quantize_act_ref(x.data(), n, p, ref.data());
        k->quantize_act(x.data(), n, p, simd.data());
        // Compare the used bytes only (padding is not written).
        EXPECT_EQ(0, std::memcmp(ref.data(), simd.data(), n)) << cpu::isa_name(isa) << " q n=" << n;
        EXPECT_EQ(0, std::memcmp(ref.data() + a.d_off, simd.data() + a.d_off, n / 32 * 4));
        EXPECT_EQ(0, std::memcmp(ref.data() + a.ds_off, simd.data() + a.ds_off, n / 32 * 4));
        EXPECT_EQ(0,
                  std::memcmp(ref.data() + a.bias_off, simd.data() + a.bias_off, n / p.group * 4))
            << cpu::isa_name(isa) << " bias n=" << n << " group " << p.group;
        EXPECT_EQ(0, std::memcmp(ref.data() + a.sum_off, simd.data() + a.sum_off, n / 32 * 2));
      }
    }
  }
}

TEST(CpuActQuant, ReferenceRoundsToNearestWithinHalfAStep) {
  std::mt19937 rng(3);
  const int64_t n = 512;
  std::vector<float> x = random_floats(rng, n);
  const cpu::ActLayout a = cpu::act_layout(n);
  std::vector<uint8_t> buf(a.stride);
  cpu::quantize_act_ref(x.data(), n, {8, 32}, buf.data());
  const auto* q = reinterpret_cast<const int8_t*>(buf.data());
  const auto* d = reinterpret_cast<const float*>(buf.data() + a.d_off);
  const auto* bias = reinterpret_cast<const int32_t*>(buf.data() + a.bias_off);
  for (int64_t b = 0; b < n / 32; ++b) {
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      EXPECT_LE(std::fabs(x[32 * b + j] - d[b] * q[32 * b + j]), 0.5001f * d[b]);
      sum += q[32 * b + j];
    }
    EXPECT_EQ(bias[b], -8 * sum);
  }
}

TEST(CpuActQuant, ASpanOf256SharesOneScale) {
  std::mt19937 rng(4);
  const int64_t n = 800;  // three spans of 256 and a last one of 32
  std::vector<float> x = random_floats(rng, n);
  x[300] = 9.0f;  // the max of the second span
  const cpu::ActLayout a = cpu::act_layout(n);
  std::vector<uint8_t> buf(a.stride);
  cpu::quantize_act_ref(x.data(), n, {0, 32, 256}, buf.data());
  const auto* q = reinterpret_cast<const int8_t*>(buf.data());
  const auto* d = reinterpret_cast<const float*>(buf.data() + a.d_off);
  const auto* sum = reinterpret_cast<const int16_t*>(buf.data() + a.sum_off);
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int64_t e = b / 8 * 256; e < std::min<int64_t>(n, b / 8 * 256 + 256); ++e)
      amax = std::max(amax, std::fabs(x[e]));
    EXPECT_EQ(d[b], amax / 127.0f) << "block " << b;
    int s = 0;
    for (int j = 0; j < 32; ++j) {
      EXPECT_LE(std::fabs(x[32 * b + j] - d[b] * q[32 * b + j]), 0.5001f * d[b]);
      s += q[32 * b + j];
    }
    EXPECT_EQ(sum[b], s);
  }
  EXPECT_EQ(q[300], 127);
}

// Kernel level: tiled kernel == exact dot of dequantized weights and dequantized activations.
void check_tiled(Isa isa, Type t, int64_t rows, int64_t n_in, int n_tok, bool raw, uint32_t seed) {
  std::mt19937 rng(seed);
  const cpu::MatKernels* k = cpu::mat_kernels(isa);
  const size_t rb = quant::row_bytes(t, n_in);
  const std::vector<uint8_t> w = random_weight(rng, t, rows, n_in, raw);
  const cpu::TileLayout L = cpu::tile_layout(t, n_in);
  const std::vector<uint8_t> tiles = tile_weight(L, w, rb, rows);
  const std::vector<float> wf = dequantize(t, w, rows, n_in);

  const cpu::ActLayout A = cpu::act_layout(n_in);
  const cpu::ActParams ap = k->act_params(t);
  const std::vector<float> x = random_floats(rng, size_t(n_tok) * n_in, 2.0f);
  std::vector<uint8_t> act(A.stride * n_tok);
  for (int i = 0; i < n_tok; ++i) k->quantize_act(&x[i * n_in], n_in, ap, &act[i * A.stride]);

  const int64_t ldy = rows + 3;
  const float kSentinel = 12345.0f;
  std::vector<float> y(size_t(n_tok) * ldy, kSentinel);
  k->tiled(L, tiles.data(), cpu::n_tiles(rows), rows, act.data(), n_tok, y.data(), ldy);

  for (int i = 0; i < n_tok; ++i) {
    const uint8_t* a = &act[i * A.stride];
    const auto* q = reinterpret_cast<const int8_t*>(a);
    const auto* d = reinterpret_cast<const float*>(a + A.d_off);
    for (int64_t r = 0; r < rows; ++r) {
      double exact = 0, mag = 0;
      for (int64_t e = 0; e < n_in; ++e) {
        const double xv = double(d[e / 32]) * q[e];
        exact += double(wf[r * n_in + e]) * xv;
        mag += std::fabs(double(wf[r * n_in + e]) * xv);
      }
      const double got = y[i * ldy + r];
      ASSERT_NEAR(got, exact, 2e-6 * mag + 1e-30)
          << cpu::isa_name(isa) << " " << quant::type_name(t) << " rows " << rows << " n_in "
          << n_in << " tokens " << n_tok << " raw " << raw << " at token " << i << " row " << r;
    }
    for (int64_t r = rows; r < ldy; ++r) ASSERT_EQ(y[i * ldy + r], kSentinel) << "wrote past row";
  }
}

TEST(CpuTiledKernels, MatchExactDotsOfTheirInputs) {
  uint32_t seed = 1;
  for (Isa isa : simd_isas())
    for (Type t : kTiledTypes) {
      const int b = block_size(t);
      for (int64_t n_in : {int64_t(b), int64_t(3 * b)})
        for (int64_t rows : {1, 16, 21})
          for (int n_tok : {1, 2, 3, 8, 11}) check_tiled(isa, t, rows, n_in, n_tok, false, seed++);
    }
}

TEST(CpuTiledKernels, HandleEveryBitPattern) {
  uint32_t seed = 100;
  for (Isa isa : simd_isas())
    for (Type t : kTiledTypes)
      for (int n_tok : {1, 2, 9}) check_tiled(isa, t, 33, 2 * block_size(t), n_tok, true, seed++);
}

TEST(CpuTiledKernels, ManyTokensAsTileProducts) {
  // 16 tokens and more: the AMX level's tile products (in 16-token tiles, the rest through the
  // AVX-512 kernels), and the other levels' token loops; random and raw (every bit pattern)
  // weights.
  uint32_t seed = 300;
  for (Isa isa : simd_isas())
    for (Type t : kTiledTypes) {
      const int b = block_size(t);
      for (int n_tok : {16, 23, 48}) check_tiled(isa, t, 33, 2 * b, n_tok, false, seed++);
      check_tiled(isa, t, 17, 9 * 32 * (b / 32), 32, true, seed++);
    }
}

TEST(CpuTiledKernels, AmxTileProductsEqualAvx512BitForBit) {
  // The AMX level keeps the float order of the AVX-512 kernels' 8-token tiles (per group, or per
  // block for Q4_K / Q5_K), so that a token's result does not depend on whether its batch reached
  // 16 tokens. AVX-512 runs 32 tokens as 8-token tiles.
  if (!cpu::isa_supported(Isa::Amx)) GTEST_SKIP() << "this CPU has no AMX (or Linux refused it)";
  const cpu::MatKernels* amx = cpu::mat_kernels(Isa::Amx);
  const cpu::MatKernels* avx512 = cpu::mat_kernels(Isa::Avx512);
  std::mt19937 rng(41);
  for (Type t : kTiledTypes) {
    const int64_t rows = 37, n_in = 4 * 256, n_tok = 32;
    const size_t rb = quant::row_bytes(t, n_in);
    const std::vector<uint8_t> w = random_weight(rng, t, rows, n_in, false);
    const cpu::TileLayout L = cpu::tile_layout(t, n_in);
    const std::vector<uint8_t> tiles = tile_weight(L, w, rb, rows);
    const cpu::ActLayout A = cpu::act_layout(n_in);
    const std::vector<float> x = random_floats(rng, size_t(n_tok) * n_in, 2.0f);
    std::vector<uint8_t> act(A.stride * n_tok);
    for (int i = 0; i < n_tok; ++i)
      amx->quantize_act(&x[i * n_in], n_in, amx->act_params(t), &act[i * A.stride]);
    std::vector<float> y0(size_t(n_tok) * rows), y1(y0.size());
    amx->tiled(L, tiles.data(), cpu::n_tiles(rows), rows, act.data(), n_tok, y0.data(), rows);
    avx512->tiled(L, tiles.data(), cpu::n_tiles(rows), rows, act.data(), n_tok, y1.data(), rows);
    for (size_t i = 0; i < y0.size(); ++i)
      ASSERT_EQ(y0[i], y1[i]) << quant::type_name(t) << " token " << i / rows << " row "
                              << i % rows;
  }
}

TEST(CpuTiledKernels, LargeRowsAndTokenBlocks) {
  // More tokens than one activation block (kActBlockBytes / stride) and a long row.
  for (Isa isa : simd_isas()) {
    check_tiled(isa, Type::Q4_K, 18, 8960, 70, false, 9);
    check_tiled(isa, Type::IQ4_XS, 16, 4096, 130, false, 10);
  }
}

void check_rows(Isa isa, Type t, int64_t rows, int64_t n_in, int n_tok, uint32_t seed) {
  std::mt19937 rng(seed);
  const cpu::MatKernels* k = cpu::mat_kernels(isa);
  const size_t rb = quant::row_bytes(t, n_in);
  const std::vector<float> src = random_floats(rng, size_t(rows) * n_in);
  std::vector<uint8_t> w(rb * rows);
  for (int64_t r = 0; r < rows; ++r) quant::quantize_row(t, &src[r * n_in], &w[r * rb], n_in);
  const std::vector<float> wf = dequantize(t, w, rows, n_in);
  const int64_t ldx = n_in + 5, ldy = rows + 2;
  const std::vector<float> x = random_floats(rng, size_t(n_tok) * ldx);
  std::vector<float> y(size_t(n_tok) * ldy, -7.0f);
  const size_t gb = cpu::float_group_bytes(t, n_in);
  std::vector<uint8_t> groups(cpu::float_groups(rows) * gb);
  for (int64_t g = 0; g < cpu::float_groups(rows); ++g)
    cpu::repack_float_group(t, n_in, w.data() + g * cpu::kFloatRows * rb, rb,
                            int(std::min<int64_t>(cpu::kFloatRows, rows - g * cpu::kFloatRows)),
                            groups.data() + g * gb);
  k->rows(t, groups.data(), n_in, rows, x.data(), ldx, n_tok, y.data(), ldy);
  for (int i = 0; i < n_tok; ++i) {
    for (int64_t r = 0; r < rows; ++r) {
      double exact = 0, mag = 0;
      for (int64_t e = 0; e < n_in; ++e) {
        exact += double(wf[r * n_in + e]) * x[i * ldx + e];
        mag += std::fabs(double(wf[r * n_in + e]) * x[i * ldx + e]);
      }
      ASSERT_NEAR(y[i * ldy + r], exact, 1e-6 * mag + 1e-30)
          << cpu::isa_name(isa) << " " << quant::type_name(t) << " rows " << rows << " n_in "
          << n_in << " token " << i << " row " << r;
    }
    for (int64_t r = rows; r < ldy; ++r) ASSERT_EQ(y[i * ldy + r], -7.0f);
  }
}

TEST(CpuRowKernels, FloatWeightsMatchExactDots) {
  uint32_t seed = 500;
  for (Isa isa : simd_isas())
    for (Type t : {Type::F32, Type::F16, Type::BF16})
      for (int64_t n_in : {1, 7, 16, 17, 172, 256})
        for (int64_t rows : {1, 7, 16, 17, 32, 45})
          for (int n_tok : {1, 2, 3, 5, 7, 12, 13}) check_rows(isa, t, rows, n_in, n_tok, seed++);
}

TEST(CpuRowKernels, LongRowsInChunksForManyTokens) {
  // Rows longer than the kernels' K-range (512 elements) with more tokens than one register tile,
  // more than one token block (96) with a tail, and more groups than one group block (16 x 32
  // rows) with a tail.
  for (Isa isa : simd_isas())
    for (Type t : {Type::F32, Type::F16, Type::BF16}) {
      check_rows(isa, t, 6, 2100, 9, 77);
      check_rows(isa, t, 5, 1100, 100, 78);
      check_rows(isa, t, 530, 600, 14, 79);
    }
}

// Backend level: prepare_weight + matmul (tiled, in place, float rows) against the reference
// backend, within the rounding bound of the int8 activations.
struct BackendCase {
  Type type;
  int64_t rows, n_in;
  int n_tok;
};

void check_backend(Isa isa, const BackendCase& c, bool in_place) {
  std::mt19937 rng(uint32_t(c.rows * 31 + c.n_in + c.n_tok));
  const size_t rb = quant::row_bytes(c.type, c.n_in);
  const std::vector<uint8_t> w = random_weight(rng, c.type, c.rows, c.n_in, false);
  const std::vector<float> x = random_floats(rng, size_t(c.n_tok) * c.n_in, 1.5f);
  straw::ops::Weight view{c.type, c.n_in, c.rows, rb, w.data(), 0};

  cpu::CpuBackend ref(cpu::CpuOptions{.n_threads = 2, .isa = Isa::Scalar});
  std::vector<float> y_ref(size_t(c.n_tok) * c.rows);
  ref.matmul(ref.prepare_weight(view), x.data(), y_ref.data(), c.n_tok);

  cpu::CpuOptions o{.n_threads = 2, .isa = isa};
  if (in_place) o.memory_budget = 1;
  cpu::CpuBackend be(o);
  const straw::ops::Weight prepared = be.prepare_weight(view);
  EXPECT_EQ(be.prepare_status().low_memory, in_place);
  const bool tiled = cpu::tiled_type(c.type);
  const bool grouped = cpu::float_type(c.type);
  EXPECT_EQ(prepared.layout, in_place  ? 0u
                             : tiled   ? cpu::kLayoutTiled
                             : grouped ? cpu::kLayoutFloatRows
                                       : 0u);
  std::vector<float> y(size_t(c.n_tok) * c.rows);
  be.matmul(prepared, x.data(), y.data(), c.n_tok);

  const std::vector<float> wf = dequantize(c.type, w, c.rows, c.n_in);
  for (int t = 0; t < c.n_tok; ++t) {
    // Bound: each activation moves by at most half a step, max|x_block| / 254.
    std::vector<double> step(c.n_in / 32 + 1, 0.0);
    for (int64_t e = 0; e < c.n_in; ++e)
      step[e / 32] = std::max(step[e / 32], std::fabs(double(x[t * c.n_in + e])) / 254.0);
    for (int64_t r = 0; r < c.rows; ++r) {
      double bound = 0, mag = 0;
      for (int64_t e = 0; e < c.n_in; ++e) {
        const double wv = std::fabs(double(wf[r * c.n_in + e]));
        bound += tiled ? wv * step[e / 32] * 1.0001 : 0.0;
        mag += wv * std::fabs(double(x[t * c.n_in + e]));
      }
      ASSERT_NEAR(y[t * c.rows + r], y_ref[t * c.rows + r], bound + 2e-6 * mag)
          << cpu::isa_name(isa) << " " << quant::type_name(c.type) << " in_place " << in_place
          << " token " << t << " row " << r;
    }
  }
}

TEST(CpuBackendMatmul, SimdPathsAgreeWithTheReference) {
  const BackendCase cases[] = {
      {Type::IQ4_XS, 100, 512, 1}, {Type::IQ4_XS, 40, 256, 20}, {Type::Q4_K, 70, 768, 3},
      {Type::Q5_K, 33, 512, 2},    {Type::Q6_K, 48, 256, 17},   {Type::Q8_0, 50, 96, 4},
      {Type::Q4_0, 17, 64, 1},     {Type::Q5_0, 16, 160, 5},    {Type::Q5_1, 5, 32, 2},
      {Type::IQ4_NL, 31, 128, 9},  {Type::F16, 13, 172, 3},     {Type::BF16, 9, 64, 1},
      {Type::F32, 20, 100, 6},     {Type::Q4_1, 8, 64, 2},      {Type::Q3_K, 8, 256, 2},
  };
  for (Isa isa : simd_isas())
    for (const BackendCase& c : cases) {
      check_backend(isa, c, false);
      check_backend(isa, c, true);
    }
}

// matmul_many (one parallel region over several tiled weights, x quantized once per activation
// format) gives exactly what one matmul per weight gives, a float weight among them included.
TEST(CpuBackendMatmul, ManyInOneRegionEqualsOneByOne) {
  std::mt19937 rng(7);
  constexpr int64_t kIn = 512;
  struct Spec {
    Type type;
    int64_t rows;
  };
  const std::vector<Spec> specs = {
      {Type::Q4_K, 72}, {Type::Q6_K, 40}, {Type::IQ4_XS, 17}, {Type::F32, 9}};
  std::vector<std::vector<uint8_t>> raw;
  for (const Spec& s : specs) raw.push_back(random_weight(rng, s.type, s.rows, kIn, false));
  for (Isa isa : simd_isas())
    for (int n_tok : {1, 5, 9, 20}) {
      cpu::CpuBackend be(cpu::CpuOptions{.n_threads = 2, .isa = isa});
      std::vector<straw::ops::Weight> w;
      for (size_t i = 0; i < specs.size(); ++i)
        w.push_back(be.prepare_weight({specs[i].type, kIn, specs[i].rows,
                                       quant::row_bytes(specs[i].type, kIn), raw[i].data(), 0}));
      const std::vector<float> x = random_floats(rng, size_t(n_tok) * kIn, 1.5f);
      std::vector<std::vector<float>> one(specs.size()), many(specs.size());
      std::vector<straw::ops::MatmulJob> jobs;
      for (size_t i = 0; i < specs.size(); ++i) {
        one[i].resize(size_t(n_tok) * specs[i].rows);
        many[i].assign(one[i].size(), std::nanf(""));
        be.matmul(w[i], x.data(), one[i].data(), n_tok);
        jobs.push_back({&w[i], many[i].data()});
      }
      be.matmul_many(jobs, x.data(), n_tok);
      for (size_t i = 0; i < specs.size(); ++i)
        ASSERT_EQ(one[i], many[i])
            << cpu::isa_name(isa) << " " << quant::type_name(specs[i].type) << " tokens " << n_tok;
    }
}

TEST(CpuBackendMatmul, ReportsWhatPrepareDid) {
  std::mt19937 rng(1);
  const std::vector<uint8_t> w = random_weight(rng, Type::Q4_K, 32, 256, false);
  straw::ops::Weight view{Type::Q4_K, 256, 32, quant::row_bytes(Type::Q4_K, 256), w.data(), 0};
  cpu::CpuBackend be(cpu::CpuOptions{.n_threads = 1});
  be.prepare_weight(view);
  EXPECT_EQ(be.prepare_status().n_copied + be.prepare_status().n_in_place, 1);
  EXPECT_FALSE(be.prepare_status().message().empty());
  // Vectors (norm weights, biases) are used by the element-wise ops as they are.
  const std::vector<float> norm(256, 1.0f);
  const straw::ops::Weight vec{Type::F32, 256, 1, 1024, norm.data(), 0};
  const straw::ops::Weight same = be.prepare_weight(vec);
  EXPECT_EQ(same.data, vec.data);
  EXPECT_EQ(same.layout, 0u);
}

}  // namespace
