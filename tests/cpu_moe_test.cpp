// The CPU mixture-of-experts ops against references: moe_matmul at every kernel level (and the
// scalar level itself) against exact float64 dot products of the dequantized expert matrices, on
// random routings including experts with no token or one token and all tokens on one expert, for
// every type real MoE files use, repacked and in place; moe_route against a float64 softmax /
// top-k; moe_combine against the weighted sum.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/kernels.h"
#include "quant/quant.h"
#include "util/str.h"

namespace {

using straw::cpu::Isa;
using straw::quant::Type;
namespace cpu = straw::cpu;
namespace quant = straw::quant;

std::vector<Isa> every_isa() {
  std::vector<Isa> out = {Isa::Scalar};
  for (Isa i : {Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Amx})
    if (cpu::isa_supported(i)) out.push_back(i);
  return out;
}

std::vector<float> random_floats(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// How the slots of a test are routed.
enum class Routing {
  Random,     // each token picks n_used distinct experts at random
  OneExpert,  // every token's first choice is expert 0 (the rest random)
  Sparse,     // experts 1 and n_expert-1 take almost every slot, expert 2 one slot, the rest none
};

std::vector<int32_t> routing(std::mt19937& rng, Routing r, int n_tokens, int n_used, int n_expert) {
  std::vector<int32_t> ids(size_t(n_tokens) * n_used);
  for (int t = 0; t < n_tokens; ++t) {
    std::vector<int32_t> perm(static_cast<size_t>(n_expert));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    if (r == Routing::OneExpert) {
      std::swap(perm[0], *std::find(perm.begin(), perm.end(), 0));
    } else if (r == Routing::Sparse) {
      // Experts 1 and n_expert - 1 take every slot but one: token 0's last choice is expert 2
      // (a single slot); the others (0, 3, ...) get none.
      perm.assign(size_t(n_expert), 0);
      perm[0] = t % 2 ? 1 : n_expert - 1;
      perm[1] = t % 2 ? n_expert - 1 : 1;
      for (int k = 2; k < n_used; ++k) perm[size_t(k)] = int32_t(k + 1);
      if (t == 0 && n_used >= 2) perm[size_t(n_used - 1)] = 2;
    }
    for (int k = 0; k < n_used; ++k) ids[size_t(t) * n_used + k] = perm[size_t(k)];
  }
  return ids;
}

struct MoeCase {
  Type type;
  int n_expert;
  int64_t n_out, n_in;
  int n_tokens, n_used;
  Routing routing;
  bool x_per_slot;
};

// moe_matmul on a backend at `isa` against float64 dots of the dequantized expert rows with the
// float activations, within the rounding bound of the int8 activations (tiled types) or float
// rounding (float types and the scalar reference). On the paths that read the file layout (in
// place, the scalar level) the experts no slot chose are filled with 0xFF bytes (NaN scales and
// NaN floats), so that reading them would show in the results.
void check_moe(Isa isa, const MoeCase& c, bool in_place, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t rb = quant::row_bytes(c.type, c.n_in);
  const size_t matrix = rb * size_t(c.n_out);
  std::vector<uint8_t> w(matrix * size_t(c.n_expert));
  std::vector<float> wf(size_t(c.n_expert) * c.n_out * c.n_in);
  for (int64_t r = 0; r < c.n_expert * c.n_out; ++r) {
    const std::vector<float> f = random_floats(rng, size_t(c.n_in), 0.5f + float(r % 3));
    quant::quantize_row(c.type, f.data(), w.data() + size_t(r) * rb, c.n_in);
    quant::dequantize_row(c.type, w.data() + size_t(r) * rb, &wf[size_t(r) * c.n_in], c.n_in);
  }
  const std::vector<int32_t> ids = routing(rng, c.routing, c.n_tokens, c.n_used, c.n_expert);
  const int64_t n_slots = int64_t(c.n_tokens) * c.n_used;
  const std::vector<float> x =
      random_floats(rng, size_t(c.x_per_slot ? n_slots : c.n_tokens) * c.n_in, 1.5f);
  // Experts no slot uses: their bytes become NaN-producing garbage in the file layout, so that a
  // read of them (on the in-place path, which reads the file layout) shows in the results.
  std::vector<bool> used(size_t(c.n_expert), false);
  for (int32_t e : ids) used[size_t(e)] = true;
  if (in_place)
    for (int e = 0; e < c.n_expert; ++e)
      if (!used[size_t(e)]) std::fill_n(w.begin() + e * matrix, matrix, uint8_t(0xFF));

  straw::ops::Weight view{c.type, c.n_in, c.n_out, rb, w.data(), 0};
  view.n_expert = c.n_expert;
  view.expert_bytes = matrix;
  cpu::CpuOptions o{.n_threads = 2, .isa = isa};
  if (in_place) o.memory_budget = 1;
  cpu::CpuBackend be(o);
  const straw::ops::Weight prepared = be.prepare_weight(view);
  if (!in_place && isa != Isa::Scalar) {
    EXPECT_NE(prepared.data, view.data);
    EXPECT_EQ(prepared.layout, cpu::tiled_type(c.type)   ? cpu::kLayoutTiled
                               : cpu::float_type(c.type) ? cpu::kLayoutFloatRows
                                                         : 0u);
  }
  std::vector<float> y(size_t(n_slots) * c.n_out, -7.0f);
  be.moe_matmul(prepared, x.data(), c.x_per_slot, ids.data(), c.n_tokens, c.n_used, y.data());

  const bool tiled = isa != Isa::Scalar && cpu::tiled_type(c.type);
  for (int64_t s = 0; s < n_slots; ++s) {
    const int32_t e = ids[size_t(s)];
    const float* xs = x.data() + (c.x_per_slot ? s : s / c.n_used) * c.n_in;
    std::vector<double> step(size_t(c.n_in / 32 + 1), 0.0);
    for (int64_t i = 0; i < c.n_in; ++i)
      step[size_t(i / 32)] = std::max(step[size_t(i / 32)], std::fabs(double(xs[i])) / 254.0);
    for (int64_t r = 0; r < c.n_out; ++r) {
      const float* wr = &wf[(size_t(e) * c.n_out + r) * c.n_in];
      double exact = 0, mag = 0, bound = 0;
      for (int64_t i = 0; i < c.n_in; ++i) {
        exact += double(wr[i]) * xs[i];
        mag += std::fabs(double(wr[i]) * xs[i]);
        bound += tiled ? std::fabs(double(wr[i])) * step[size_t(i / 32)] * 1.0001 : 0.0;
      }
      ASSERT_NEAR(y[size_t(s) * c.n_out + r], exact, bound + 2e-6 * mag)
          << cpu::isa_name(isa) << " " << quant::type_name(c.type) << " in_place " << in_place
          << " tokens " << c.n_tokens << " slot " << s << " expert " << e << " row " << r;
    }
  }
}

TEST(CpuMoeMatmul, EveryKernelLevelMatchesExactMath) {
  // Types of real MoE files: the K-quants and IQ4 of llama-quantize's mixes, Q8_0, the legacy
  // 32-blocks, F16 / BF16 / F32 experts, and the reference-only Q4_1 / Q2_K / Q3_K.
  const Type types[] = {Type::IQ4_XS, Type::Q4_K, Type::Q5_K, Type::Q6_K, Type::Q8_0,
                        Type::IQ4_NL, Type::Q4_0, Type::Q5_0, Type::Q5_1, Type::F16,
                        Type::BF16,   Type::F32,  Type::Q4_1, Type::Q2_K, Type::Q3_K};
  uint32_t seed = 1;
  for (Isa isa : every_isa())
    for (Type t : types) {
      const int64_t n_in = quant::type_info(t).block_size == 256 ? 512 : 96;
      for (const MoeCase& c : {
               MoeCase{t, 8, 48, n_in, 1, 2, Routing::Random, false},    // decode
               MoeCase{t, 8, 21, n_in, 7, 2, Routing::Random, true},     // partial tile
               MoeCase{t, 16, 32, n_in, 40, 4, Routing::Random, false},  // prefill
               MoeCase{t, 8, 16, n_in, 9, 3, Routing::OneExpert, true},  // one expert for all
               MoeCase{t, 8, 35, n_in, 6, 2, Routing::Sparse, false},    // 0 and 1 token
           }) {
        check_moe(isa, c, false, seed);
        check_moe(isa, c, true, seed);
        ++seed;
      }
    }
}

TEST(CpuMoeMatmul, ManyTokensPerExpertSpanActivationBlocks) {
  // An expert with more tokens than one activation block of the tiled kernels (kActBlockBytes).
  for (Isa isa : every_isa()) {
    check_moe(isa, {Type::Q4_K, 4, 40, 2048, 300, 2, Routing::OneExpert, false}, false, 77);
    check_moe(isa, {Type::IQ4_XS, 4, 24, 1024, 200, 4, Routing::Random, true}, false, 78);
  }
}

TEST(CpuMoeMatmul, RefusesBadInput) {
  std::vector<uint8_t> w(quant::row_bytes(Type::Q8_0, 32) * 4 * 2);
  straw::ops::Weight view{Type::Q8_0, 32, 4, quant::row_bytes(Type::Q8_0, 32), w.data(), 0};
  cpu::CpuBackend be(cpu::CpuOptions{.n_threads = 1});
  std::vector<float> x(32), y(8);
  const int32_t bad[] = {0, 2};
  // A 2-D weight is not an expert tensor, and an expert tensor is not a matmul weight.
  EXPECT_THROW(be.moe_matmul(view, x.data(), false, bad, 1, 2, y.data()), straw::Error);
  view.n_expert = 2;
  view.expert_bytes = view.row_bytes * 4;
  EXPECT_THROW(be.matmul(view, x.data(), y.data(), 1), straw::Error);
  // Expert id 2 of 2 experts.
  EXPECT_THROW(be.moe_matmul(view, x.data(), false, bad, 1, 2, y.data()), straw::Error);
}

// Float64 routing of one token: softmax, the n_used largest (ties to the lower id), renormalised.
void route_ref(const float* l, int n_expert, int n_used, bool norm, float scale, int32_t* ids,
               double* w) {
  double m = -INFINITY, sum = 0;
  for (int e = 0; e < n_expert; ++e) m = std::max(m, double(l[e]));
  std::vector<double> p(static_cast<size_t>(n_expert));
  for (int e = 0; e < n_expert; ++e) sum += p[size_t(e)] = std::exp(double(l[e]) - m);
  std::vector<int> order(static_cast<size_t>(n_expert));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return p[size_t(a)] > p[size_t(b)]; });
  double s = 0;
  for (int k = 0; k < n_used; ++k) {
    ids[k] = order[size_t(k)];
    w[k] = p[size_t(order[size_t(k)])] / sum;
    s += w[k];
  }
  for (int k = 0; k < n_used; ++k) {
    if (norm) w[k] /= s;
    if (scale != 0) w[k] *= scale;
  }
}

TEST(CpuMoeRoute, SoftmaxTopKMatchesFloat64) {
  std::mt19937 rng(3);
  for (Isa isa : every_isa()) {
    cpu::CpuBackend be(cpu::CpuOptions{.n_threads = 2, .isa = isa});
    for (const auto& [n_expert, n_used, n_tokens] :
         {std::tuple{8, 2, 5}, {128, 8, 70}, {256, 8, 3}, {4, 4, 2}, {60, 1, 9}})
      for (bool norm : {true, false})
        for (float scale : {0.0f, 2.5f}) {
          const int T = n_tokens, E = n_expert, K = n_used;
          std::vector<float> logits = random_floats(rng, size_t(T) * E, 2.0f);
          // Exact ties among the top choices of the first token: the lower id comes first.
          logits[3 % E] = logits[1 % E] = 9.0f;
          std::vector<int32_t> ids(size_t(T) * K);
          std::vector<float> w(size_t(T) * K);
          be.moe_route(logits.data(), T, E, K, norm, scale, ids.data(), w.data());
          for (int t = 0; t < T; ++t) {
            std::vector<int32_t> rid(static_cast<size_t>(K));
            std::vector<double> rw(static_cast<size_t>(K));
            route_ref(&logits[size_t(t) * E], E, K, norm, scale, rid.data(), rw.data());
            for (int k = 0; k < K; ++k) {
              ASSERT_EQ(ids[size_t(t) * K + k], rid[size_t(k)]) << "token " << t << " k " << k;
              ASSERT_NEAR(w[size_t(t) * K + k], rw[size_t(k)], 1e-6 * std::fabs(rw[size_t(k)]));
            }
          }
          if (E > 3) {
            EXPECT_EQ(ids[0], 1 % E);
          }
        }
  }
}

TEST(CpuMoeCombine, WeightedSumOfTheExpertOutputs) {
  std::mt19937 rng(5);
  cpu::CpuBackend be(cpu::CpuOptions{.n_threads = 2});
  for (int T : {1, 3, 40}) {
    const int K = 3;
    const int64_t W = 37;
    const std::vector<float> y = random_floats(rng, size_t(T) * K * W);
    const std::vector<float> p = random_floats(rng, size_t(T) * K);
    std::vector<float> out(size_t(T) * W);
    be.moe_combine(y.data(), p.data(), T, K, W, out.data());
    for (int t = 0; t < T; ++t)
      for (int64_t i = 0; i < W; ++i) {
        double s = 0, mag = 0;
        for (int k = 0; k < K; ++k) {
          s += double(p[size_t(t) * K + k]) * y[(size_t(t) * K + k) * W + i];
          mag += std::fabs(double(p[size_t(t) * K + k]) * y[(size_t(t) * K + k) * W + i]);
        }
        ASSERT_NEAR(out[size_t(t) * W + i], s, 1e-6 * mag);
      }
  }
}

}  // namespace
