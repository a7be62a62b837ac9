// The CUDA ops of linear-attention (Gated DeltaNet) and gated-attention layers (qwen35) against the
// CPU reference backend on random data: strided row copies, the sigmoid output gate, the L2 norm of
// the packed q/k heads, the gated RMS norm, the decay and update gates, the causal conv with its
// carried state, and the delta rule with its state, in the shapes and strides the model uses, with
// snapshots inside a batch and batches split over calls. Skipped with a message when the build has
// no CUDA or no GPU can be used.
//
// Tolerances (rel_error: ||gpu - cpu|| / ||cpu||). Copies (copy_rows, the conv state and its
// snapshot) move floats and must be exact. The element-wise ops and the norms are float32 math
// whose only differences are the order of the sums and the GPU's exp (which may be a fast
// intrinsic of a few ulp): 1e-5 leaves room for that, while any indexing error gives O(1). The
// delta rule carries a S x S state through every token (70 here) and may be computed in another
// order (or a chunked form): its rounding accumulates with the sequence, so 1e-4 for its outputs,
// its final state and its snapshots.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#ifdef STRAW_HAVE_CUDA
#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "cuda_test_util.h"
#endif

namespace {

#ifndef STRAW_HAVE_CUDA

TEST(CudaLinearAttention, NeedACudaBuild) {
  GTEST_SKIP() << "built without CUDA: configure with -DSTRAW_CUDA=ON to build the GPU kernels of "
                  "the linear-attention ops and run these tests on a machine with an NVIDIA GPU";
}

#else

using namespace straw;

constexpr double kElementwiseTol = 1e-5;  // why: see the file's header
constexpr double kRecurrenceTol = 1e-4;

using test::rel_error;

// Elements that differ (bit for bit; NaN differs from everything).
size_t n_differ(const std::vector<float>& got, const std::vector<float>& ref) {
  size_t n = 0;
  for (size_t i = 0; i < ref.size(); ++i) n += !(got[i] == ref[i]);
  return n;
}

class CudaLinearAttention : public test::CudaOpsTest {
 protected:
  CudaLinearAttention() : CudaOpsTest(20260115) {}

  static float* f(ops::Buffer& b) { return static_cast<float*>(b.data()); }

  // An F32 weight vector in host memory, kept for the fixture's life: the GPU backend uploads host
  // vectors on first use and finds them again by address, and a freed vector's address could come
  // back for the next one (with stale contents on the device).
  ops::Weight vec(std::vector<float> v) {
    const std::vector<float>& h = *kept_.emplace_back(std::make_unique<std::vector<float> >(v));
    return {quant::Type::F32, int64_t(h.size()), 1, h.size() * sizeof(float), h.data(), 0};
  }

  std::vector<std::unique_ptr<std::vector<float> > > kept_;
};

TEST_F(CudaLinearAttention, CopyRowsMatchesTheCpuExactly) {
  struct Case {
    int64_t n_rows, width, src_stride, dst_stride, src_offset;
  };
  // The gated attention's split of [q_h | gate_h] rows (both halves), narrow rows, long rows with
  // strides that break every alignment, and a single row.
  const Case cases[] = {{10, 128, 256, 128, 0},
                        {10, 128, 256, 128, 128},
                        {50, 8, 20, 11, 3},
                        {1000, 100, 257, 131, 5},
                        {1, 300, 300, 301, 0}};
  for (const Case& c : cases) {
    const std::vector<float> src = random(size_t(c.n_rows * c.src_stride));
    // The gaps between destination rows hold values that must survive.
    std::vector<float> dst = random(size_t(c.n_rows * c.dst_stride), 5.0f, 6.0f);
    auto sd = up(src), dd = up(dst);
    cpu_.copy_rows(src.data() + c.src_offset, c.src_stride, dst.data(), c.dst_stride, c.n_rows,
                   c.width);
    gpu_->copy_rows(f(*sd) + c.src_offset, c.src_stride, f(*dd), c.dst_stride, c.n_rows, c.width);
    EXPECT_EQ(n_differ(down(*dd, dst.size()), dst), 0u)
        << c.n_rows << " rows of " << c.width << ", strides " << c.src_stride << " / "
        << c.dst_stride;
  }
}

TEST_F(CudaLinearAttention, SigmoidMulMatchesTheCpu) {
  for (int64_t n : {1, 9, 1000, 100003}) {
    std::vector<float> x = random(size_t(n), -3.0f, 3.0f);
    const std::vector<float> g = random(size_t(n), -8.0f, 8.0f);
    auto xd = up(x), gd = up(g);
    cpu_.sigmoid_mul(x.data(), g.data(), n);
    gpu_->sigmoid_mul(f(*xd), f(*gd), n);
    EXPECT_LE(rel_error(down(*xd, x.size()), x), kElementwiseTol) << "n " << n;
  }
}

TEST_F(CudaLinearAttention, L2NormOfPackedQkRowsMatchesTheCpu) {
  // As qwen35 calls it: per token a row [q heads | k heads | v heads] of C floats, the first 2 Hk
  // heads normalized, v left alone. Head sizes of the register paths and an odd one; a token
  // stride that is not the group's width; a zero row (eps keeps it zero).
  const int Hk = 2, Hv = 4;
  for (int S : {64, 128, 48})
    for (int T : {1, 5, 70}) {
      const int64_t C = 2 * int64_t(Hk) * S + int64_t(Hv) * S;
      std::vector<float> x = random(size_t(T) * C, -2.0f, 2.0f);
      std::fill_n(x.begin() + S, S, 0.0f);  // token 0, q head 1
      auto xd = up(x);
      cpu_.l2norm(x.data(), T, 2 * Hk, S, C, 1e-6f);
      gpu_->l2norm(f(*xd), T, 2 * Hk, S, C, 1e-6f);
      const std::vector<float> got = down(*xd, x.size());
      EXPECT_LE(rel_error(got, x), kElementwiseTol) << "S " << S << ", " << T << " tokens";
      // The v heads between the groups are not touched.
      size_t v_differ = 0;
      for (int t = 0; t < T; ++t)
        for (int64_t i = 2 * Hk * S; i < C; ++i)
          v_differ += got[size_t(t * C + i)] != x[size_t(t * C + i)];
      EXPECT_EQ(v_differ, 0u) << "v columns changed, S " << S << ", " << T << " tokens";
    }
  // Plain rows: one per token, contiguous.
  std::vector<float> x = random(7 * 1000, -2.0f, 2.0f);
  auto xd = up(x);
  cpu_.l2norm(x.data(), 7, 1, 1000, 1000, 1e-6f);
  gpu_->l2norm(f(*xd), 7, 1, 1000, 1000, 1e-6f);
  EXPECT_LE(rel_error(down(*xd, x.size()), x), kElementwiseTol) << "contiguous rows of 1000";
}

TEST_F(CudaLinearAttention, RmsNormGatedInPlaceMatchesTheCpu) {
  // As the model calls it: y aliasing x, one row per (token, value head), width the head size.
  // The weight as a host vector (uploaded by the backend) and as a prepared one (as the model
  // passes it).
  for (int64_t width : {64, 128, 48, 256})
    for (bool prepared : {false, true}) {
      const int64_t rows = 70 * 4;
      std::vector<float> x = random(size_t(rows * width), -3.0f, 3.0f);
      const std::vector<float> z = random(size_t(rows * width), -6.0f, 6.0f);
      const ops::Weight w = vec(random(size_t(width), 0.5f, 1.5f));
      auto xd = up(x), zd = up(z);
      cpu_.rmsnorm_gated(x.data(), w, z.data(), x.data(), rows, width, 1e-6f);
      gpu_->rmsnorm_gated(f(*xd), prepared ? gpu_->prepare_weight(w) : w, f(*zd), f(*xd), rows,
                          width, 1e-6f);
      EXPECT_LE(rel_error(down(*xd, x.size()), x), kElementwiseTol)
          << "width " << width << (prepared ? ", prepared weight" : ", host weight");
    }
}

TEST_F(CudaLinearAttention, DeltaNetGatesMatchTheCpu) {
  for (int H : {4, 32, 48})
    for (int T : {1, 70})
      for (bool prepared : {false, true}) {
        std::vector<float> alpha = random(size_t(T) * H, -6.0f, 6.0f);
        std::vector<float> beta = random(size_t(T) * H, -8.0f, 8.0f);
        alpha[0] = 40.0f;   // softplus passes large inputs through (llama.cpp: above 20)
        alpha[1] = -40.0f;  // and takes tiny ones to ~e^x
        const ops::Weight dt = vec(random(size_t(H)));
        std::vector<float> a = random(size_t(H));
        for (float& v : a) v = -std::exp(v);  // a = -exp(A_log) < 0
        const ops::Weight aw = vec(a);
        auto ad = up(alpha), bd = up(beta);
        cpu_.delta_net_gates(alpha.data(), beta.data(), dt, aw, T, H);
        if (prepared)
          gpu_->delta_net_gates(f(*ad), f(*bd), gpu_->prepare_weight(dt), gpu_->prepare_weight(aw),
                                T, H);
        else
          gpu_->delta_net_gates(f(*ad), f(*bd), dt, aw, T, H);
        const std::string what = std::to_string(T) + " tokens x " + std::to_string(H) + " heads" +
                                 (prepared ? ", prepared weights" : ", host weights");
        EXPECT_LE(rel_error(down(*ad, alpha.size()), alpha), kElementwiseTol) << "g, " << what;
        EXPECT_LE(rel_error(down(*bd, beta.size()), beta), kElementwiseTol) << "beta, " << what;
      }
}

// One causal conv problem: x rows with padding, taps, a non-zero state.
struct Conv {
  int T, C, K = 4;
  int64_t stride;
  std::vector<float> x, w, state;

  ops::ConvParams params(const float* xp, const float* wp, float* st, float* y, bool silu) const {
    ops::ConvParams p;
    p.n_tokens = T, p.n_channels = C, p.kernel = K;
    p.x = xp, p.x_stride = stride, p.w = wp, p.state = st, p.y = y, p.silu = silu;
    return p;
  }
};

TEST_F(CudaLinearAttention, SsmConvMatchesTheCpuWithStateAndSnapshots) {
  // Channels of a register-friendly and of an odd count; batches shorter than the K - 1 = 3 state
  // rows (the new state then mixes the old state and x), equal to it, and longer.
  for (int C : {96, 1000})
    for (int T : {1, 2, 3, 17})
      for (bool silu : {true, false})
        for (int snap : {-1, 0, T / 2, T - 1}) {
          const int64_t stride = C + 9;
          Conv c{T,
                 C,
                 4,
                 stride,
                 random(size_t(T) * stride, -2.0f, 2.0f),
                 random(size_t(C) * 4, -0.5f, 0.5f),
                 random(size_t(3) * C, -2.0f, 2.0f)};
          std::vector<float> st = c.state, y(size_t(T) * C), sn(c.state.size(), -1.0f);
          ops::ConvParams p = c.params(c.x.data(), c.w.data(), st.data(), y.data(), silu);
          if (snap >= 0) p.snapshot = sn.data(), p.snapshot_after = snap;
          cpu_.ssm_conv(p);
          // The taps prepared as the model prepares ssm_conv1d (a device copy).
          const ops::Weight wd = gpu_->prepare_weight(vec(c.w));
          auto xd = up(c.x), state_d = up(c.state), yd = poisoned(y.size()),
               snd = poisoned(sn.size());
          ops::ConvParams g =
              c.params(f(*xd), static_cast<const float*>(wd.data), f(*state_d), f(*yd), silu);
          if (snap >= 0) g.snapshot = f(*snd), g.snapshot_after = snap;
          gpu_->ssm_conv(g);
          const std::string what = std::to_string(C) + " channels, " + std::to_string(T) +
                                   " tokens" + (silu ? ", silu" : "") +
                                   (snap >= 0 ? ", snapshot after " + std::to_string(snap) : "");
          EXPECT_LE(rel_error(down(*yd, y.size()), y), kElementwiseTol) << "y, " << what;
          EXPECT_EQ(n_differ(down(*state_d, st.size()), st), 0u) << "state, " << what;
          if (snap >= 0) {
            EXPECT_EQ(n_differ(down(*snd, sn.size()), sn), 0u) << "snapshot, " << what;
          }
        }
}

TEST_F(CudaLinearAttention, SsmConvCarriesTheStateAcrossCalls) {
  // The batch in pieces on the GPU (single tokens as in decoding, a piece shorter than the state)
  // equals one call over all of it on the CPU.
  const int T = 17, C = 1000;
  const int64_t stride = C + 9;
  Conv c{T,
         C,
         4,
         stride,
         random(size_t(T) * stride, -2.0f, 2.0f),
         random(size_t(C) * 4, -0.5f, 0.5f),
         random(size_t(3) * C, -2.0f, 2.0f)};
  std::vector<float> st = c.state, y(size_t(T) * C);
  cpu_.ssm_conv(c.params(c.x.data(), c.w.data(), st.data(), y.data(), true));
  const ops::Weight wd = gpu_->prepare_weight(vec(c.w));
  for (const std::vector<int>& cuts : {std::vector<int>{2, 17}, {1, 2, 3, 4, 17}, {8, 9, 17}}) {
    auto xd = up(c.x), state_d = up(c.state), yd = poisoned(y.size());
    int t0 = 0;
    for (int t1 : cuts) {
      Conv piece = c;
      piece.T = t1 - t0;
      gpu_->ssm_conv(piece.params(f(*xd) + t0 * stride, static_cast<const float*>(wd.data),
                                  f(*state_d), f(*yd) + int64_t(t0) * C, true));
      t0 = t1;
    }
    EXPECT_LE(rel_error(down(*yd, y.size()), y), kElementwiseTol)
        << "y, " << cuts.size() << " calls";
    EXPECT_EQ(n_differ(down(*state_d, st.size()), st), 0u) << "state, " << cuts.size() << " calls";
  }
}

// A delta-rule problem packed as the model packs it: per token one row of `stride` floats holding
// the q heads, then the k heads at Hk * S, then the v heads at 2 Hk * S; gates; an initial state.
struct DeltaNet {
  int T, Hk, Hv, S;
  int64_t stride;
  std::vector<float> qkv, g, beta, state;

  ops::DeltaNetParams params(const float* rows, const float* gp, const float* bp, float* st,
                             float* out) const {
    ops::DeltaNetParams p;
    p.n_tokens = T, p.n_k_heads = Hk, p.n_v_heads = Hv, p.head_dim = S;
    p.q = rows, p.k = rows + int64_t(Hk) * S, p.qk_stride = stride;
    p.v = rows + 2 * int64_t(Hk) * S, p.v_stride = stride;
    p.g = gp, p.beta = bp, p.state = st, p.out = out;
    p.scale = 1.0f / std::sqrt(float(S));
    return p;
  }
};

DeltaNet make_delta_net(std::mt19937& rng, int T, int Hk, int Hv, int S, int pad) {
  DeltaNet d{T, Hk, Hv, S, 2 * int64_t(Hk) * S + int64_t(Hv) * S + pad, {}, {}, {}, {}};
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> gd(-2.0f, 0.0f), bd(0.01f, 0.99f), sd(-0.5f, 0.5f);
  d.qkv.resize(size_t(T) * d.stride);
  for (float& x : d.qkv) x = nd(rng);
  // q and k L2-normalized per head, as the model's l2norm leaves them.
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < 2 * Hk; ++h) {
      float* x = d.qkv.data() + t * d.stride + int64_t(h) * S;
      double ss = 0;
      for (int i = 0; i < S; ++i) ss += double(x[i]) * x[i];
      for (int i = 0; i < S; ++i) x[i] = float(x[i] / std::sqrt(ss));
    }
  d.g.resize(size_t(T) * Hv);
  d.beta.resize(size_t(T) * Hv);
  for (float& x : d.g) x = gd(rng);
  for (float& x : d.beta) x = bd(rng);
  // A decay that wipes head 0's state (e^-60), as the CPU tests have: a chunked form must not
  // divide by the underflowed product.
  if (T > 3) d.g[size_t(2) * Hv] = -60.0f;
  d.state.resize(size_t(Hv) * S * S);
  for (float& x : d.state) x = sd(rng);
  return d;
}

struct DnShape {
  int Hk, Hv, S;
};

TEST_F(CudaLinearAttention, GatedDeltaNetMatchesTheCpuWithStateAndSnapshots) {
  // Heads of the register paths (64, 128) and an odd size (48: the generic path); value heads
  // tiled over 2 key heads and 1:1; Qwen3.5-27B's 48 value heads over 16 key heads (a ratio of
  // 3). Rows packed as the model packs them (pad 0) and with 5 floats more (unaligned rows).
  const DnShape shapes[] = {{2, 4, 64},  {2, 4, 128}, {2, 4, 48},   {2, 2, 64},
                            {2, 2, 128}, {2, 2, 48},  {16, 48, 128}};
  for (const DnShape& sh : shapes)
    for (int T : {1, 5, 70})
      for (int pad : {0, 5})
        for (bool snapshot : {false, true}) {
          if (sh.Hv > 4 && (T == 70 || pad)) continue;  // the big shape once per batch size
          const DeltaNet d = make_delta_net(rng_, T, sh.Hk, sh.Hv, sh.S, pad);
          const int snap = snapshot ? T / 2 : -1;
          std::vector<float> st = d.state, out(size_t(T) * sh.Hv * sh.S), sn(st.size(), -1.0f);
          ops::DeltaNetParams p =
              d.params(d.qkv.data(), d.g.data(), d.beta.data(), st.data(), out.data());
          if (snapshot) p.snapshot = sn.data(), p.snapshot_after = snap;
          cpu_.gated_delta_net(p);
          auto rows = up(d.qkv), gd = up(d.g), bd = up(d.beta), state_d = up(d.state);
          auto od = poisoned(out.size()), snd = poisoned(sn.size());
          ops::DeltaNetParams q = d.params(f(*rows), f(*gd), f(*bd), f(*state_d), f(*od));
          if (snapshot) q.snapshot = f(*snd), q.snapshot_after = snap;
          gpu_->gated_delta_net(q);
          const std::string what = std::to_string(sh.Hv) + "/" + std::to_string(sh.Hk) +
                                   " heads of " + std::to_string(sh.S) + ", " + std::to_string(T) +
                                   " tokens, pad " + std::to_string(pad) +
                                   (snapshot ? ", snapshot after " + std::to_string(snap) : "");
          EXPECT_LE(rel_error(down(*od, out.size()), out), kRecurrenceTol) << "out, " << what;
          EXPECT_LE(rel_error(down(*state_d, st.size()), st), kRecurrenceTol) << "state, " << what;
          if (snapshot) {
            EXPECT_LE(rel_error(down(*snd, sn.size()), sn), kRecurrenceTol) << "snapshot, " << what;
          }
        }
}

TEST_F(CudaLinearAttention, GatedDeltaNetCarriesTheStateAcrossCalls) {
  // Micro-batches and decoding: the batch in pieces (one of a single token) on the GPU equals one
  // call over all of it on the CPU.
  for (int S : {128, 48}) {
    const int T = 70;
    const DeltaNet d = make_delta_net(rng_, T, 2, 4, S, 0);
    std::vector<float> st = d.state, out(size_t(T) * 4 * S);
    cpu_.gated_delta_net(d.params(d.qkv.data(), d.g.data(), d.beta.data(), st.data(), out.data()));
    auto rows = up(d.qkv), gd = up(d.g), bd = up(d.beta), state_d = up(d.state);
    auto od = poisoned(out.size());
    int t0 = 0;
    for (int t1 : {33, 34, T}) {
      DeltaNet piece = d;
      piece.T = t1 - t0;
      gpu_->gated_delta_net(piece.params(f(*rows) + t0 * d.stride, f(*gd) + t0 * 4, f(*bd) + t0 * 4,
                                         f(*state_d), f(*od) + int64_t(t0) * 4 * S));
      t0 = t1;
    }
    EXPECT_LE(rel_error(down(*od, out.size()), out), kRecurrenceTol) << "out, heads of " << S;
    EXPECT_LE(rel_error(down(*state_d, st.size()), st), kRecurrenceTol) << "state, heads of " << S;
  }
}

#endif  // STRAW_HAVE_CUDA

}  // namespace
