// The CPU backend's element-wise ops and attention on each SIMD level against the scalar backend
// (the reference implementation), on random inputs with edge sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "cpu/cpu_backend.h"
#include "quant/f16.h"

namespace {

using straw::cpu::CpuBackend;
using straw::cpu::CpuOptions;
using straw::cpu::Isa;
namespace cpu = straw::cpu;
namespace ops = straw::ops;

std::vector<Isa> simd_isas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::Avx2, Isa::AvxVnni, Isa::Avx512})
    if (cpu::isa_supported(i)) out.push_back(i);
  return out;
}

std::vector<float> random_floats(std::mt19937& rng, size_t n, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, float rel, float abs,
                  const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], abs + rel * std::fabs(b[i])) << what << " at " << i;
}

TEST(CpuOps, SwigluRmsnormAddMatchTheScalarBackend) {
  std::mt19937 rng(11);
  CpuBackend ref(CpuOptions{.n_threads = 2, .isa = Isa::Scalar});
  for (Isa isa : simd_isas()) {
    CpuBackend be(CpuOptions{.n_threads = 2, .isa = isa});
    for (int64_t n : {1, 7, 8, 100, 70000}) {
      std::vector<float> g = random_floats(rng, n, 6.0f), u = random_floats(rng, n, 1.0f);
      g[0] = -200.0f;  // exp overflow side
      if (n > 1) g[1] = 150.0f;
      std::vector<float> a(n), b(n);
      ref.swiglu(g.data(), u.data(), a.data(), n);
      be.swiglu(g.data(), u.data(), b.data(), n);
      expect_close(b, a, 2e-6f, 1e-30f, "swiglu");
      // Each element alone gives bit for bit what it gives inside the array: rows evaluated in a
      // batch (one long array) then equal rows evaluated one by one, whatever the CPU's rcp.
      std::vector<float> gated(g.begin(), g.begin() + std::min<int64_t>(n, 40));
      be.sigmoid_mul(gated.data(), u.data(), int64_t(gated.size()));
      for (size_t i = 0; i < gated.size(); ++i) {
        float one = 0.0f, x = g[i];
        be.swiglu(&g[i], &u[i], &one, 1);
        ASSERT_EQ(one, b[i]) << "swiglu element " << i << " of " << n;
        be.sigmoid_mul(&x, &u[i], 1);
        ASSERT_EQ(x, gated[i]) << "sigmoid_mul element " << i << " of " << n;
      }
    }
    for (int64_t width : {3, 64, 1536}) {
      const int64_t rows = width == 1536 ? 40 : 5;
      std::vector<float> x = random_floats(rng, rows * width, 2.0f);
      std::vector<float> w = random_floats(rng, width, 1.0f);
      ops::Weight gw{straw::quant::Type::F32, width, 1, size_t(width) * 4, w.data(), 0};
      std::vector<float> a(x.size()), b(x.size());
      ref.rmsnorm(x.data(), gw, a.data(), rows, width, 1e-6f);
      be.rmsnorm(x.data(), gw, b.data(), rows, width, 1e-6f);
      expect_close(b, a, 1e-6f, 0.0f, "rmsnorm");
      std::vector<float> s = x;
      be.add(s.data(), a.data(), int64_t(s.size()));
      for (size_t i = 0; i < s.size(); ++i) ASSERT_EQ(s[i], x[i] + a[i]);
    }
  }
}

TEST(CpuOps, RopeTableMatchesDirectComputation) {
  std::mt19937 rng(5);
  for (Isa isa : {Isa::Scalar, cpu::best_isa()}) {
    CpuBackend be(CpuOptions{.n_threads = 2, .isa = isa});
    const int heads = 3, dim = 16;
    std::vector<float> ff = {1.0f, 2.0f, 4.0f, 8.0f, 1.5f, 1.0f};
    for (ops::RopeMode mode : {ops::RopeMode::Norm, ops::RopeMode::Neox})
      for (int n_tok : {1, 40, 3}) {
        ops::RopeParams p{mode, 12, 10000.0f, 0.5f, n_tok == 3 ? ff.data() : nullptr};
        const int64_t pos0 = 17;
        std::vector<float> x = random_floats(rng, size_t(n_tok) * heads * dim, 1.0f), y = x;
        be.rope(y.data(), n_tok, heads, dim, pos0, p);
        be.rope(y.data(), n_tok, heads, dim, pos0, ops::RopeParams{});  // other params: no reuse
        for (int t = 0; t < n_tok; ++t)
          for (int h = 0; h < heads; ++h) {
            const float* v = &x[(size_t(t) * heads + h) * dim];
            std::vector<float> e(v, v + dim);
            for (int i = 0; i < p.n_rot / 2; ++i) {
              double th = double(pos0 + t) * 0.5 * std::pow(10000.0, -2.0 * i / p.n_rot);
              if (p.freq_factors) th /= p.freq_factors[i];
              const int a = mode == ops::RopeMode::Norm ? 2 * i : i;
              const int b = mode == ops::RopeMode::Norm ? 2 * i + 1 : i + p.n_rot / 2;
              const float c = float(std::cos(th)), s = float(std::sin(th));
              e[a] = v[a] * c - v[b] * s;
              e[b] = v[a] * s + v[b] * c;
            }
            // The second call (n_rot = 0) leaves everything unchanged.
            for (int d = 0; d < dim; ++d)
              ASSERT_EQ(y[(size_t(t) * heads + h) * dim + d], e[d]) << "t " << t << " d " << d;
          }
      }
  }
}

struct AttnCase {
  int n_tokens, n_heads, n_kv_heads, head_dim, head_dim_v;
  int64_t pos0;
  ops::KvType k_type;
  ops::KvType v_type;
};

// One case: the cache filled through kv_store of the reference backend (and of `be`: the same
// bytes), then be.attention against ref.attention.
void check_attention(const AttnCase& c, CpuBackend& ref, CpuBackend& be, Isa isa,
                     std::mt19937& rng) {
  const int64_t n_ctx = c.pos0 + c.n_tokens + 3;
  const int64_t kw = int64_t(c.n_kv_heads) * c.head_dim, vw = int64_t(c.n_kv_heads) * c.head_dim_v;
  std::vector<uint8_t> kbuf(n_ctx * ops::kv_row_bytes(c.k_type, kw)),
      vbuf(n_ctx * ops::kv_row_bytes(c.v_type, vw));
  ops::KvLayer kv{c.k_type, c.v_type, kbuf.data(), vbuf.data(), n_ctx, c.n_kv_heads};
  // Fill the cache (earlier positions) through kv_store of the reference backend.
  const std::vector<float> k = random_floats(rng, (c.pos0 + c.n_tokens) * kw, 1.0f);
  const std::vector<float> v = random_floats(rng, (c.pos0 + c.n_tokens) * vw, 1.0f);
  ref.kv_store(kv, k.data(), v.data(), int(c.pos0 + c.n_tokens), 0, kw, vw);
  // The SIMD kv_store writes the same bytes.
  std::vector<uint8_t> kbuf2(kbuf.size()), vbuf2(vbuf.size());
  ops::KvLayer kv2{c.k_type, c.v_type, kbuf2.data(), vbuf2.data(), n_ctx, c.n_kv_heads};
  be.kv_store(kv2, k.data(), v.data(), int(c.pos0 + c.n_tokens), 0, kw, vw);
  ASSERT_EQ(kbuf, kbuf2);
  ASSERT_EQ(vbuf, vbuf2);

  const std::vector<float> q =
      random_floats(rng, size_t(c.n_tokens) * c.n_heads * c.head_dim, 1.0f);
  ops::AttentionParams p{c.n_tokens,
                         c.pos0,
                         c.n_heads,
                         c.n_kv_heads,
                         c.head_dim,
                         c.head_dim_v,
                         1.0f / std::sqrt(float(c.head_dim))};
  std::vector<float> a(size_t(c.n_tokens) * c.n_heads * c.head_dim_v), b(a.size());
  ref.attention(q.data(), kv, a.data(), p);
  be.attention(q.data(), kv, b.data(), p);
  // The fused decodes (every item of one query token, prompt tails too; AVX-512, AVX-VNNI and
  // AVX2) compute P.V over a quantized V cache in 16-bit integers: each key block's P d_v rounded
  // to 2^-16 of its largest value per row and V block, up to ~5e-5 here on outputs of order 0.1-1
  // (the 8- or 4-bit V levels themselves cost 4e-3 and more; golden logits do not move, see
  // Golden.QuantizedKvCacheStaysCloseToTheF16Cache).
  const bool int_pv = ops::kv_quantized(c.v_type);
  expect_close(b, a, int_pv ? 2e-4f : 2e-5f, int_pv ? 1e-4f : 2e-6f,
               "attention " + std::string(cpu::isa_name(isa)) + " threads " +
                   std::to_string(be.n_threads()) + " tokens " + std::to_string(c.n_tokens) +
                   " pos0 " + std::to_string(c.pos0) + " K " + ops::kv_type_name(c.k_type) + " V " +
                   ops::kv_type_name(c.v_type));
}

TEST(CpuOps, AttentionMatchesTheScalarBackend) {
  using ops::KvType;
  const AttnCase cases[] = {
      {1, 12, 2, 128, 128, 0, KvType::F16, KvType::F16},
      {1, 12, 2, 128, 128, 200, KvType::F16, KvType::F16},
      {37, 12, 2, 64, 64, 5, KvType::F16, KvType::F16},
      {20, 4, 4, 8, 16, 70, KvType::F32, KvType::F32},
      {3, 6, 2, 32, 24, 130, KvType::F32, KvType::F32},
      {70, 8, 1, 16, 16, 0, KvType::F16, KvType::F16},
      {1, 4, 2, 40, 40, 64, KvType::F16, KvType::F16},
      {1, 12, 2, 128, 128, 100, KvType::Q8_0, KvType::Q8_0},
      {19, 8, 2, 64, 32, 40, KvType::Q8_0, KvType::Q8_0},
      {1, 12, 2, 128, 128, 100, KvType::Q4_0, KvType::Q4_0},
      {19, 8, 2, 64, 32, 40, KvType::Q4_0, KvType::Q4_0},
      {5, 7, 1, 64, 64, 61, KvType::Q4_0, KvType::Q4_0},  // GQA 7:1, a tail of 2 keys past 64
      // K and V of different types (llama.cpp's -ctk / -ctv).
      {1, 8, 4, 64, 64, 33, KvType::Q8_0, KvType::Q4_0},
      {17, 14, 2, 64, 64, 70, KvType::F16, KvType::Q4_0},
      {3, 6, 2, 32, 32, 9, KvType::Q4_0, KvType::F32},
      // Decode over long contexts: the keys split into ranges across threads, then merged.
      {1, 12, 2, 128, 128, 1000, KvType::F16, KvType::F16},
      {1, 8, 8, 64, 64, 1500, KvType::Q8_0, KvType::Q8_0},
      {1, 6, 1, 32, 32, 700, KvType::F32, KvType::F32},
      {1, 16, 2, 128, 128, 1333, KvType::Q4_0, KvType::Q4_0},
      // Depth 32K (decode and a short prefill), a small model's heads so that it stays fast.
      {1, 8, 2, 64, 64, 32767, KvType::Q4_0, KvType::Q4_0},
      {3, 4, 1, 32, 32, 32700, KvType::Q8_0, KvType::Q4_0},
      {1, 16, 4, 128, 128, 32760, KvType::Q8_0, KvType::Q8_0},
      // Integer scores (Q8_0 / Q4_0 K): GQA 1, 3, 5 (row tiles of 4 with tails of 1..3), head
      // sizes of 1..8 blocks, key counts that are not multiples of the 8-key tile.
      {1, 8, 8, 32, 32, 12, KvType::Q8_0, KvType::F16},
      {2, 6, 2, 96, 64, 77, KvType::Q4_0, KvType::F16},
      {1, 10, 2, 256, 256, 300, KvType::Q4_0, KvType::Q8_0},
      {9, 10, 2, 128, 128, 251, KvType::Q8_0, KvType::F32},
      {33, 12, 4, 64, 64, 130, KvType::Q4_0, KvType::Q4_0},
      // The fused decode (AVX-512): groups of 1-8 rows (16 / rows keys per pass), K chunks of 4
      // blocks with a partial last one (96 = 3 blocks, 160 = 4 + 1), V columns in 64s with a
      // 32-column tail, rows 7 and 8 in two P.V groups; 16 rows take the general path.
      {1, 28, 4, 128, 128, 300, KvType::Q4_0, KvType::Q4_0},
      {1, 40, 8, 128, 128, 257, KvType::F16, KvType::Q8_0},
      {1, 6, 2, 96, 96, 150, KvType::Q4_0, KvType::Q4_0},
      {1, 4, 1, 160, 160, 90, KvType::Q8_0, KvType::Q8_0},
      {1, 3, 1, 256, 256, 129, KvType::F32, KvType::F16},
      {1, 14, 2, 64, 96, 77, KvType::Q4_0, KvType::Q8_0},
      {1, 16, 2, 128, 64, 200, KvType::F16, KvType::Q4_0},
      {1, 16, 1, 64, 64, 300, KvType::Q8_0, KvType::Q8_0},
      // Decode over long contexts, a last key range shorter than the others.
      {1, 12, 2, 128, 128, 4000, KvType::F16, KvType::F16},
      {1, 20, 4, 64, 64, 9000, KvType::F32, KvType::Q4_0},
      // A prompt chunk at depth with fewer (KV head, 16-token) items than twice the threads: the
      // keys split into ranges too, then merged per row.
      {16, 8, 1, 64, 64, 3000, KvType::Q8_0, KvType::Q8_0},
      {5, 12, 2, 128, 128, 2000, KvType::Q4_0, KvType::Q4_0},
      {7, 4, 1, 64, 64, 1000, KvType::F16, KvType::F16},
      {21, 7, 1, 64, 64, 1500, KvType::F32, KvType::Q4_0},
  };
  std::mt19937 rng(21);
  CpuBackend ref(CpuOptions{.n_threads = 2, .isa = Isa::Scalar});
  for (Isa isa : simd_isas()) {
    CpuBackend be(CpuOptions{.n_threads = 2, .isa = isa});
    for (const AttnCase& c : cases) check_attention(c, ref, be, isa, rng);
  }
}

// Decode over a long context on one thread (each KV head's keys whole) and on two with as many KV
// heads as threads or more, in the CPU's head-major cache.
TEST(CpuOps, AttentionDecodeOnOneThreadAndManyKvHeads) {
  using ops::KvType;
  const AttnCase cases[] = {
      {1, 12, 2, 128, 128, 3000, KvType::F16, KvType::F16},
      {1, 16, 4, 128, 128, 2500, KvType::Q8_0, KvType::Q4_0},
      {1, 40, 8, 128, 128, 1200, KvType::Q4_0, KvType::F16},
  };
  std::mt19937 rng(22);
  CpuBackend ref(CpuOptions{.n_threads = 2, .isa = Isa::Scalar});
  for (Isa isa : simd_isas())
    for (int threads : {1, 2}) {
      CpuBackend be(CpuOptions{.n_threads = threads, .isa = isa});
      for (const AttnCase& c : cases) check_attention(c, ref, be, isa, rng);
    }
}

}  // namespace
