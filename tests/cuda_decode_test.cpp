// The CUDA kernels' block decoding (src/cuda/quant_decode.h) compiled for the host and checked
// against the CPU reference dequantizer. Runs in every configuration, with or without a GPU: the
// kernels call exactly these functions, so the bit manipulation of every format is verified here.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/quant_decode.h"
#include "quant/f16.h"
#include "quant/iq4_nl.h"
#include "quant/quant.h"
#include "quant/types.h"

namespace {

using straw::quant::Type;
namespace sc = straw::cuda;

// Offsets of the fp16 scale fields of a block, patched after filling blocks with random bytes so
// that every level / scale bit pattern occurs but scales stay finite and moderate.
std::vector<int> scale_offsets(Type t) {
  switch (t) {
    case Type::Q4_0:
    case Type::Q5_0:
    case Type::Q8_0:
    case Type::IQ4_NL:
    case Type::IQ4_XS:
      return {0};
    case Type::Q4_1:
    case Type::Q5_1:
    case Type::Q4_K:
    case Type::Q5_K:
      return {0, 2};
    case Type::Q6_K:
      return {208};
    default:
      return {};
  }
}

std::vector<uint8_t> random_row(Type t, int64_t n, std::mt19937& rng) {
  const size_t bytes = straw::quant::row_bytes(t, n);
  std::vector<uint8_t> row(bytes);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> val(-2.0f, 2.0f);
  if (t == Type::F32) {
    for (int64_t i = 0; i < n; ++i) {
      const float v = val(rng);
      std::memcpy(row.data() + 4 * i, &v, 4);
    }
    return row;
  }
  if (t == Type::F16 || t == Type::BF16) {
    for (int64_t i = 0; i < n; ++i) {
      const float v = val(rng);
      const uint16_t h =
          t == Type::F16 ? straw::quant::fp32_to_fp16(v) : straw::quant::fp32_to_bf16(v);
      std::memcpy(row.data() + 2 * i, &h, 2);
    }
    return row;
  }
  for (auto& b : row) b = uint8_t(byte(rng));
  const straw::quant::TypeInfo& ti = straw::quant::type_info(t);
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  for (size_t blk = 0; blk < bytes / ti.type_size; ++blk)
    for (int off : scale_offsets(t)) {
      const uint16_t h = straw::quant::fp32_to_fp16(scale(rng) * (byte(rng) & 1 ? 1.0f : -1.0f));
      std::memcpy(row.data() + blk * ti.type_size + off, &h, 2);
    }
  return row;
}

// The activation quantizer of the matvec path (mirrors the device kernel): per 32 values,
// d = max|x| / 127, q = round-to-nearest-even(x / d), s = d * sum(q).
void quantize_act(const float* x, int64_t n, int8_t* qs, sc::DS* ds) {
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[32 * b + i]));
    const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int i = 0; i < 32; ++i) {
      const int q = int(std::nearbyint(x[32 * b + i] * id));
      qs[32 * b + i] = int8_t(q);
      sum += q;
    }
    ds[b] = {d, d * float(sum)};
  }
}

template <Type T>
void check_format() {
  using D = sc::QDec<T>;
  std::mt19937 rng(1234 + int(T));
  const int64_t n = 1024;  // 4 super-blocks, 32 small blocks
  for (int rep = 0; rep < 20; ++rep) {
    std::vector<uint8_t> row = random_row(T, n, rng);
    std::vector<float> ref(n), got(n);
    straw::quant::dequantize_row(T, row.data(), ref.data(), n);
    for (int64_t j = 0; j < n / 8; ++j) D::dequant8(row.data(), j, got.data() + 8 * j);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_NEAR(got[i], ref[i], 1e-6f * std::fabs(ref[i]) + 1e-30f)
          << straw::quant::type_name(T) << " element " << i;

    if constexpr (sc::is_int8_format(T)) {
      constexpr int NT = 3;
      std::uniform_real_distribution<float> val(-3.0f, 3.0f);
      std::vector<float> x(NT * n);
      for (auto& v : x) v = val(rng);
      std::vector<int8_t> qs(NT * n);
      std::vector<sc::DS> ds(NT * n / 32);
      for (int t = 0; t < NT; ++t)
        quantize_act(x.data() + t * n, n, qs.data() + t * n, ds.data() + t * n / 32);
      const sc::ActQ8 act{qs.data(), ds.data(), n};
      float acc[NT] = {};
      for (int64_t u = 0; u < n / D::kUnitElems; ++u)
        D::template dot_unit<NT>(row.data(), u, act, acc);
      for (int t = 0; t < NT; ++t) {
        // Exact math of the int path: dequantized weights times dequantized activations.
        double want = 0, mag = 0;
        for (int64_t i = 0; i < n; ++i) {
          const double xa = double(ds[t * n / 32 + i / 32].d) * qs[t * n + i];
          want += double(ref[i]) * xa;
          mag += std::fabs(double(ref[i]) * xa);
        }
        EXPECT_NEAR(acc[t], want, 2e-5 * mag + 1e-6)
            << straw::quant::type_name(T) << " token " << t;
      }
    }
  }
}

TEST(CudaDecode, Q4_0) {
  check_format<Type::Q4_0>();
}
TEST(CudaDecode, Q4_1) {
  check_format<Type::Q4_1>();
}
TEST(CudaDecode, Q5_0) {
  check_format<Type::Q5_0>();
}
TEST(CudaDecode, Q5_1) {
  check_format<Type::Q5_1>();
}
TEST(CudaDecode, Q8_0) {
  check_format<Type::Q8_0>();
}
TEST(CudaDecode, IQ4_NL) {
  check_format<Type::IQ4_NL>();
}
TEST(CudaDecode, IQ4_XS) {
  check_format<Type::IQ4_XS>();
}
TEST(CudaDecode, Q4_K) {
  check_format<Type::Q4_K>();
}
TEST(CudaDecode, Q5_K) {
  check_format<Type::Q5_K>();
}
TEST(CudaDecode, Q6_K) {
  check_format<Type::Q6_K>();
}
TEST(CudaDecode, F16) {
  check_format<Type::F16>();
}
TEST(CudaDecode, BF16) {
  check_format<Type::BF16>();
}
TEST(CudaDecode, F32) {
  check_format<Type::F32>();
}

TEST(CudaDecode, BlockGeometryMatchesTheTypeTable) {
  auto check = [](Type t, int elems, int bytes) {
    EXPECT_EQ(straw::quant::type_info(t).block_size, elems) << straw::quant::type_name(t);
    EXPECT_EQ(int(straw::quant::type_info(t).type_size), bytes) << straw::quant::type_name(t);
  };
#define STRAW_GEOM(T) check(Type::T, sc::QDec<Type::T>::kBlockElems, sc::QDec<Type::T>::kBlockBytes)
  STRAW_GEOM(Q4_0);
  STRAW_GEOM(Q4_1);
  STRAW_GEOM(Q5_0);
  STRAW_GEOM(Q5_1);
  STRAW_GEOM(Q8_0);
  STRAW_GEOM(IQ4_NL);
  STRAW_GEOM(IQ4_XS);
  STRAW_GEOM(Q4_K);
  STRAW_GEOM(Q5_K);
  STRAW_GEOM(Q6_K);
  STRAW_GEOM(F32);
  STRAW_GEOM(F16);
  STRAW_GEOM(BF16);
#undef STRAW_GEOM
}

TEST(CudaDecode, Iq4LookupMatchesTheTableForEveryIndexWord) {
  for (uint32_t v = 0; v < 65536; ++v) {
    const uint32_t idx =
        (v & 0xF) | ((v >> 4) & 0xF) << 8 | ((v >> 8) & 0xF) << 16 | (v >> 12) << 24;
    const uint32_t got = sc::iq4_lookup(idx);
    for (int k = 0; k < 4; ++k) {
      const int i = int((idx >> (8 * k)) & 0xF);
      ASSERT_EQ(int(int8_t(got >> (8 * k))), straw::quant::kIQ4Values[i]) << "index word " << idx;
      ASSERT_EQ(sc::iq4_level(i), straw::quant::kIQ4Values[i]);
    }
  }
}

TEST(CudaDecode, SixBitLevelsBecomeSignedBytes) {
  for (uint32_t q = 0; q < 64; ++q) {
    const uint32_t w = q | (63 - q) << 8 | ((q + 7) & 63) << 16 | ((q * 5) & 63) << 24;
    const uint32_t r = sc::minus32_6bit(w);
    for (int k = 0; k < 4; ++k)
      EXPECT_EQ(int(int8_t(r >> (8 * k))), int((w >> (8 * k)) & 0xFF) - 32);
  }
}

TEST(CudaDecode, HalfConversionMatchesTheReferenceForEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float a = sc::half_to_float(uint16_t(h)), b = straw::quant::fp16_to_fp32(uint16_t(h));
    ASSERT_TRUE(std::memcmp(&a, &b, 4) == 0 || (std::isnan(a) && std::isnan(b))) << h;
  }
}

}  // namespace
