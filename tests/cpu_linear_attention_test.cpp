// The CPU ops of linear-attention (Gated DeltaNet) and gated-attention layers against direct
// double-precision references written from their definitions in ops/backend.h: the delta rule in
// both forms (token loop and chunked) on every kernel level, on random shapes with chunk tails,
// batches split anywhere, the causal conv with its state, the gates and the norms.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/delta_net.h"

namespace {

using straw::cpu::CpuBackend;
using straw::cpu::CpuOptions;
using straw::cpu::Isa;
namespace cpu = straw::cpu;
namespace ops = straw::ops;

std::vector<Isa> all_isas() {
  std::vector<Isa> out = {Isa::Scalar};
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

ops::Weight vec_weight(const std::vector<float>& v) {
  return {straw::quant::Type::F32, int64_t(v.size()), 1, v.size() * 4, v.data(), 0};
}

// Max |a - b| over max |b| (plus a floor): one number for a whole output.
double rel_err(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 1e-3;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(double(a[i]) - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return num / den;
}

// A delta-rule problem: q/k/v rows with padding between tokens, gates, an initial state.
struct DnCase {
  int T, Hk, Hv, S;
  int64_t qk_stride, v_stride;
  std::vector<float> qk, v, g, beta, state;

  DnCase(std::mt19937& rng, int T_, int Hk_, int Hv_, int S_) : T(T_), Hk(Hk_), Hv(Hv_), S(S_) {
    qk_stride = 2 * int64_t(Hk) * S + 5;
    v_stride = int64_t(Hv) * S + 3;
    qk = random_floats(rng, size_t(T) * qk_stride, 1.0f);
    // q and k L2-normalized per head, as the model gives them.
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < 2 * Hk; ++h) {
        float* x = qk.data() + t * qk_stride + int64_t(h) * S;
        double ss = 0;
        for (int i = 0; i < S; ++i) ss += double(x[i]) * x[i];
        for (int i = 0; i < S; ++i) x[i] = float(x[i] / std::sqrt(ss));
      }
    v = random_floats(rng, size_t(T) * v_stride, 1.0f);
    std::uniform_real_distribution<float> gd(-2.0f, 0.0f), bd(0.0f, 1.0f);
    g.resize(size_t(T) * Hv);
    beta.resize(size_t(T) * Hv);
    for (float& x : g) x = gd(rng);
    for (float& x : beta) x = bd(rng);
    if (T > 3) g[size_t(2) * Hv] = -60.0f;  // a decay that wipes the state (e^-60)
    state = random_floats(rng, size_t(Hv) * S * S, 0.3f);
  }

  // The first n tokens only.
  DnCase prefix(int n) const {
    DnCase c = *this;
    c.T = n;
    c.qk.resize(size_t(n) * qk_stride);
    c.v.resize(size_t(n) * v_stride);
    c.g.resize(size_t(n) * Hv);
    c.beta.resize(size_t(n) * Hv);
    return c;
  }

  ops::DeltaNetParams params(float* st, float* out, int t0 = 0, int n = -1) const {
    ops::DeltaNetParams p;
    p.n_tokens = n < 0 ? T : n;
    p.n_k_heads = Hk;
    p.n_v_heads = Hv;
    p.head_dim = S;
    p.q = qk.data() + t0 * qk_stride;
    p.k = qk.data() + t0 * qk_stride + int64_t(Hk) * S;
    p.qk_stride = qk_stride;
    p.v = v.data() + t0 * v_stride;
    p.v_stride = v_stride;
    p.g = g.data() + size_t(t0) * Hv;
    p.beta = beta.data() + size_t(t0) * Hv;
    p.state = st;
    p.out = out + size_t(t0) * Hv * S;
    p.scale = 1.0f / std::sqrt(float(S));
    return p;
  }

  // The definition, token by token in double: outputs then the final state appended.
  std::vector<double> reference() const {
    std::vector<double> st(state.begin(), state.end()), out(size_t(T) * Hv * S);
    std::vector<double> d(S);
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < Hv; ++h) {
        const int kh = h % Hk;
        const float* q = qk.data() + t * qk_stride + int64_t(kh) * S;
        const float* k = q + int64_t(Hk) * S;
        const float* vv = v.data() + t * v_stride + int64_t(h) * S;
        double* s = st.data() + size_t(h) * S * S;  // s[i * S + j] = S[i][j]
        const double eg = std::exp(double(g[size_t(t) * Hv + h])), b = beta[size_t(t) * Hv + h];
        for (int i = 0; i < S * S; ++i) s[i] *= eg;
        for (int j = 0; j < S; ++j) {
          double sk = 0;
          for (int i = 0; i < S; ++i) sk += s[i * S + j] * k[i];
          d[j] = b * (vv[j] - sk);
        }
        for (int i = 0; i < S; ++i)
          for (int j = 0; j < S; ++j) s[i * S + j] += k[i] * d[j];
        for (int j = 0; j < S; ++j) {
          double o = 0;
          for (int i = 0; i < S; ++i) o += s[i * S + j] * q[i];
          out[(size_t(t) * Hv + h) * S + j] = o / std::sqrt(double(S));
        }
      }
    out.insert(out.end(), st.begin(), st.end());
    return out;
  }
};

// Runs one form of one kernel table over every value head: outputs, then the final state, then
// (with a snapshot token) the state after that token.
std::vector<float> run_form(const DnCase& c, const cpu::DeltaNetKernels& k, bool chunked,
                            int snapshot_after = -1) {
  std::vector<float> st = c.state, out(size_t(c.T) * c.Hv * c.S), snap(st.size(), -1.0f);
  std::vector<float> scratch(cpu::delta_net_scratch_floats(c.S));
  ops::DeltaNetParams p = c.params(st.data(), out.data());
  if (snapshot_after >= 0) {
    p.snapshot = snap.data();
    p.snapshot_after = snapshot_after;
  }
  for (int h = 0; h < c.Hv; ++h) (chunked ? k.chunked : k.recurrent)(p, h, scratch.data());
  out.insert(out.end(), st.begin(), st.end());
  if (snapshot_after >= 0) out.insert(out.end(), snap.begin(), snap.end());
  return out;
}

struct Shape {
  int T, Hk, Hv, S;
};

const Shape kShapes[] = {{1, 1, 1, 16},   {2, 2, 4, 32},   {7, 1, 3, 8},    {31, 2, 2, 64},
                         {63, 1, 2, 16},  {64, 2, 6, 32},  {65, 1, 1, 128}, {130, 2, 4, 24},
                         {200, 1, 3, 40}, {129, 3, 3, 128}};

TEST(CpuDeltaNet, BothFormsOnEveryLevelMatchTheDefinition) {
  std::mt19937 rng(42);
  const std::pair<const cpu::DeltaNetKernels*, const char*> tables[] = {
      {&cpu::kDeltaNetRef, "ref"},
      {cpu::isa_supported(Isa::Avx2) ? &cpu::kDeltaNetAvx2 : nullptr, "avx2"},
      {cpu::isa_supported(Isa::Avx512) ? &cpu::kDeltaNetAvx512 : nullptr, "avx512"}};
  double worst[3][2] = {};
  for (const Shape& sh : kShapes) {
    const DnCase c(rng, sh.T, sh.Hk, sh.Hv, sh.S);
    const std::vector<double> want = c.reference();
    for (int ti = 0; ti < 3; ++ti) {
      const auto& [table, name] = tables[ti];
      if (!table) continue;
      for (bool chunked : {false, true}) {
        const double e = rel_err(run_form(c, *table, chunked), want);
        worst[ti][chunked] = std::max(worst[ti][chunked], e);
        EXPECT_LT(e, 2e-5) << name << (chunked ? " chunked" : " recurrent") << " T=" << sh.T
                           << " Hk=" << sh.Hk << " Hv=" << sh.Hv << " S=" << sh.S;
      }
    }
  }
  for (int ti = 0; ti < 3; ++ti)
    if (tables[ti].first)
      std::printf("%-7s max error vs float64: token loop %.2e, chunked %.2e\n", tables[ti].second,
                  worst[ti][0], worst[ti][1]);
}

// The state after a token inside the batch (a checkpoint before a prompt's last token) equals the
// final state of the batch cut after that token; it changes nothing else.
TEST(CpuDeltaNet, SnapshotInsideABatchIsTheStateAfterThatToken) {
  std::mt19937 rng(13);
  const std::pair<const cpu::DeltaNetKernels*, const char*> tables[] = {
      {&cpu::kDeltaNetRef, "ref"},
      {cpu::isa_supported(Isa::Avx2) ? &cpu::kDeltaNetAvx2 : nullptr, "avx2"},
      {cpu::isa_supported(Isa::Avx512) ? &cpu::kDeltaNetAvx512 : nullptr, "avx512"}};
  for (const Shape& sh : kShapes) {
    const DnCase c(rng, sh.T, sh.Hk, sh.Hv, sh.S);
    const size_t n_state = size_t(c.Hv) * c.S * c.S;
    for (int r : {0, c.T / 2, c.T - 2, c.T - 1}) {
      if (r < 0) continue;
      const std::vector<double> pre = c.prefix(r + 1).reference();
      const std::vector<double> want(pre.end() - std::ptrdiff_t(n_state), pre.end());
      for (const auto& [table, name] : tables) {
        if (!table) continue;
        for (bool chunked : {false, true}) {
          const std::vector<float> got = run_form(c, *table, chunked, r);
          const std::vector<float> snap(got.end() - std::ptrdiff_t(n_state), got.end());
          EXPECT_LT(rel_err(snap, want), 2e-5)
              << name << (chunked ? " chunked" : " loop") << " T=" << c.T << " after " << r;
          const std::vector<float> plain = run_form(c, *table, chunked);
          EXPECT_TRUE(std::equal(plain.begin(), plain.end(), got.begin()))
              << name << " the snapshot changed the results, T=" << c.T;
        }
      }
    }
  }
}

TEST(CpuDeltaNet, ChunkedEqualsTheTokenLoopAndBatchesSplitAnywhere) {
  std::mt19937 rng(7);
  double worst = 0;
  for (Isa isa : all_isas()) {
    CpuBackend be(CpuOptions{.n_threads = 2, .isa = isa});
    const cpu::DeltaNetKernels& k = cpu::delta_net_kernels(isa);
    for (const Shape& sh : kShapes) {
      const DnCase c(rng, sh.T, sh.Hk, sh.Hv, sh.S);
      const std::vector<float> loop = run_form(c, k, false), chunk = run_form(c, k, true);
      std::vector<double> loop_d(loop.begin(), loop.end());
      worst = std::max(worst, rel_err(chunk, loop_d));
      EXPECT_LT(rel_err(chunk, loop_d), 2e-5) << cpu::isa_name(isa) << " T=" << sh.T;
      // The backend op over the batch cut in three pieces (each piece picks its own form).
      std::vector<float> st = c.state, out(size_t(c.T) * c.Hv * c.S);
      const int cut1 = c.T / 3, cut2 = std::min(c.T, cut1 + 37);
      for (auto [t0, t1] : {std::pair{0, cut1}, {cut1, cut2}, {cut2, c.T}})
        if (t1 > t0) be.gated_delta_net(c.params(st.data(), out.data(), t0, t1 - t0));
      out.insert(out.end(), st.begin(), st.end());
      EXPECT_LT(rel_err(out, loop_d), 2e-5) << cpu::isa_name(isa) << " split T=" << sh.T;
    }
  }
  std::printf("chunked vs token loop: max error %.2e (relative to the largest output)\n", worst);
}

// y[t][c] = silu(sum_i w[c][i] x[t-K+1+i][c]) with the state before x, then the new state.
std::vector<double> conv_reference(const std::vector<float>& x, int64_t stride,
                                   const std::vector<float>& w, const std::vector<float>& state,
                                   int T, int C, int K, bool silu) {
  auto in = [&](int pos, int c) -> double {
    return pos >= 0 ? x[size_t(pos) * stride + c] : state[size_t(pos + K - 1) * C + c];
  };
  std::vector<double> out;
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < C; ++c) {
      double y = 0;
      for (int i = 0; i < K; ++i) y += double(w[size_t(c) * K + i]) * in(t - K + 1 + i, c);
      out.push_back(silu ? y / (1 + std::exp(-y)) : y);
    }
  for (int r = 0; r < K - 1; ++r)
    for (int c = 0; c < C; ++c) out.push_back(in(T - (K - 1) + r, c));
  return out;
}

TEST(CpuLinearAttention, ConvWithStateMatchesTheDefinitionAndSplits) {
  std::mt19937 rng(3);
  for (Isa isa : all_isas()) {
    CpuBackend be(CpuOptions{.n_threads = 2, .isa = isa});
    for (int K : {1, 2, 4})
      for (int C : {1, 17, 600})
        for (int T : {1, 2, 3, 5, 70}) {
          const int64_t stride = C + 9;
          const std::vector<float> x = random_floats(rng, size_t(T) * stride, 1.0f);
          const std::vector<float> w = random_floats(rng, size_t(C) * K, 0.5f);
          const std::vector<float> st0 = random_floats(rng, size_t(K - 1) * C, 1.0f);
          for (bool silu : {true, false}) {
            const std::vector<double> want = conv_reference(x, stride, w, st0, T, C, K, silu);
            // Whole batch, then the same batch in two calls carrying the state.
            // The state after token T/2 taken inside the batch: the state of the batch cut there.
            {
              const int r = T / 2;
              const std::vector<double> pre = conv_reference(x, stride, w, st0, r + 1, C, K, silu);
              std::vector<float> st = st0, y(size_t(T) * C), snap(st0.size(), -1.0f);
              ops::ConvParams p;
              p.n_tokens = T;
              p.n_channels = C;
              p.kernel = K;
              p.x = x.data();
              p.x_stride = stride;
              p.w = w.data();
              p.state = st.data();
              p.y = y.data();
              p.silu = silu;
              p.snapshot = snap.data();
              p.snapshot_after = r;
              be.ssm_conv(p);
              EXPECT_LT(rel_err(snap, std::vector<double>(pre.end() - std::ptrdiff_t(snap.size()),
                                                          pre.end())),
                        1e-7)
                  << "snapshot K=" << K << " C=" << C << " T=" << T;
            }
            for (int cut : {T, T / 2}) {
              std::vector<float> st = st0, y(size_t(T) * C);
              for (auto [t0, t1] : {std::pair{0, cut}, {cut, T}}) {
                if (t1 == t0) continue;
                ops::ConvParams p;
                p.n_tokens = t1 - t0;
                p.n_channels = C;
                p.kernel = K;
                p.x = x.data() + t0 * stride;
                p.x_stride = stride;
                p.w = w.data();
                p.state = st.data();
                p.y = y.data() + size_t(t0) * C;
                p.silu = silu;
                be.ssm_conv(p);
              }
              y.insert(y.end(), st.begin(), st.end());
              EXPECT_LT(rel_err(y, want), 1e-6)
                  << cpu::isa_name(isa) << " K=" << K << " C=" << C << " T=" << T << " cut=" << cut;
            }
          }
        }
  }
}

TEST(CpuLinearAttention, GatesNormsAndCopiesMatchTheDefinitions) {
  std::mt19937 rng(9);
  for (Isa isa : all_isas()) {
    CpuBackend be(CpuOptions{.n_threads = 2, .isa = isa});
    const std::string lvl = cpu::isa_name(isa);
    // delta_net_gates: g = softplus(alpha + dt) * a, beta = sigmoid(beta)
    {
      const int T = 5, H = 7;
      std::vector<float> alpha = random_floats(rng, T * H, 4.0f),
                         beta = random_floats(rng, T * H, 4.0f);
      alpha[0] = 40.0f;  // softplus passes large inputs through
      alpha[1] = -40.0f;
      const std::vector<float> dt = random_floats(rng, H, 1.0f);
      std::vector<float> a = random_floats(rng, H, 1.0f);
      for (float& x : a) x = -std::exp(x);
      std::vector<double> want_g, want_b;
      for (int t = 0; t < T; ++t)
        for (int h = 0; h < H; ++h) {
          const double z = double(alpha[t * H + h]) + dt[h];
          want_g.push_back(std::log1p(std::exp(z)) * a[h]);
          want_b.push_back(1 / (1 + std::exp(-double(beta[t * H + h]))));
        }
      be.delta_net_gates(alpha.data(), beta.data(), vec_weight(dt), vec_weight(a), T, H);
      EXPECT_LT(rel_err(alpha, want_g), 1e-6) << lvl;
      EXPECT_LT(rel_err(beta, want_b), 1e-6) << lvl;
    }
    // l2norm over groups of rows inside padded token rows
    for (int width : {3, 64, 128}) {
      const int T = 40, rows = 3;
      const int64_t stride = rows * width + 11;
      std::vector<float> x = random_floats(rng, size_t(T) * stride, 2.0f);
      std::fill_n(x.begin() + width, width, 0.0f);  // an all-zero row stays zero (eps)
      std::vector<double> want(x.begin(), x.end());
      for (int t = 0; t < T; ++t)
        for (int r = 0; r < rows; ++r) {
          double* w = want.data() + t * stride + r * width;
          double ss = 0;
          for (int i = 0; i < width; ++i) ss += w[i] * w[i];
          for (int i = 0; i < width; ++i) w[i] /= std::max(std::sqrt(ss), 1e-6);
        }
      be.l2norm(x.data(), T, rows, width, stride, 1e-6f);
      EXPECT_LT(rel_err(x, want), 1e-6) << lvl << " l2norm " << width;
    }
    // rmsnorm_gated: y = x / rms(x) * w * silu(z), in place
    for (int width : {5, 128}) {
      const int64_t rows = 300;
      std::vector<float> x = random_floats(rng, rows * width, 2.0f);
      const std::vector<float> z = random_floats(rng, rows * width, 3.0f);
      const std::vector<float> w = random_floats(rng, width, 1.0f);
      std::vector<double> want;
      for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int i = 0; i < width; ++i) ss += double(x[r * width + i]) * x[r * width + i];
        const double s = 1 / std::sqrt(ss / width + 1e-6);
        for (int i = 0; i < width; ++i) {
          const double zz = z[r * width + i];
          want.push_back(x[r * width + i] * s * w[i] * zz / (1 + std::exp(-zz)));
        }
      }
      be.rmsnorm_gated(x.data(), vec_weight(w), z.data(), x.data(), rows, width, 1e-6f);
      EXPECT_LT(rel_err(x, want), 2e-6) << lvl << " rmsnorm_gated " << width;
    }
    // sigmoid_mul and copy_rows
    for (int64_t n : {1, 9, 70000}) {
      std::vector<float> x = random_floats(rng, n, 1.0f);
      const std::vector<float> g = random_floats(rng, n, 5.0f);
      std::vector<double> want;
      for (int64_t i = 0; i < n; ++i) want.push_back(x[i] / (1 + std::exp(-double(g[i]))));
      be.sigmoid_mul(x.data(), g.data(), n);
      EXPECT_LT(rel_err(x, want), 1e-6) << lvl << " sigmoid_mul " << n;
    }
    // sigmoid_scale_rows (qwen35moe's shared-expert gate): one gate per row
    for (int64_t rows : {1, 7}) {
      const int64_t width = 300;
      std::vector<float> y = random_floats(rng, rows * width, 1.0f);
      const std::vector<float> g = random_floats(rng, rows, 5.0f);
      std::vector<double> want;
      for (int64_t i = 0; i < rows * width; ++i)
        want.push_back(y[i] / (1 + std::exp(-double(g[i / width]))));
      be.sigmoid_scale_rows(y.data(), g.data(), rows, width);
      EXPECT_LT(rel_err(y, want), 1e-6) << lvl << " sigmoid_scale_rows " << rows;
    }
    {
      const std::vector<float> src = random_floats(rng, 50 * 20, 1.0f);
      std::vector<float> dst(50 * 8, -1.0f);
      be.copy_rows(src.data() + 3, 20, dst.data(), 8, 50, 8);
      for (int r = 0; r < 50; ++r)
        for (int i = 0; i < 8; ++i) ASSERT_EQ(dst[r * 8 + i], src[r * 20 + 3 + i]);
    }
  }
}

}  // namespace
