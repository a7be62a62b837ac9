// CUDA Graph decode: a small forward step (embedding, norm, matmuls, RoPE, KV store, attention,
// residual, LM head) run token by token with graphs must give exactly the results of the same
// steps launched op by op, also when two sessions (two KV caches) take turns and when the step
// shape changes. Skipped with a message when the build has no CUDA or no GPU can be used.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#ifdef STRAW_HAVE_CUDA
#include "cuda/cuda_backend.h"
#include "quant/quant.h"
#endif

namespace {

#ifndef STRAW_HAVE_CUDA

TEST(CudaGraphs, NeedACudaBuild) {
  GTEST_SKIP() << "built without CUDA: configure with -DSTRAW_CUDA=ON to test CUDA Graph decode "
                  "on a machine with an NVIDIA GPU";
}

#else

using namespace straw;
using quant::Type;

constexpr int64_t kVocab = 96, kEmbd = 256, kHeads = 4, kKvHeads = 2, kHeadDim = 64, kCtx = 64;

// The host side of a toy model: weights in host memory, as a GGUF mmap would hold them.
struct ToyModel {
  std::vector<uint8_t> embd, wq, wk, wv, wo, out;
  std::vector<float> norm;
  ops::Weight t_embd, t_q, t_k, t_v, t_o, t_out, t_norm;

  explicit ToyModel(bool tied_embedding_on_device) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> d(-0.5f, 0.5f);
    auto make = [&](std::vector<uint8_t>& bytes, Type t, int64_t n_in, int64_t n_out) {
      const size_t rb = quant::row_bytes(t, n_in);
      bytes.resize(rb * n_out);
      std::vector<float> f(static_cast<size_t>(n_in));
      for (int64_t r = 0; r < n_out; ++r) {
        for (auto& v : f) v = d(rng);
        quant::quantize_row(t, f.data(), bytes.data() + r * rb, n_in);
      }
      return ops::Weight{t, n_in, n_out, rb, bytes.data(), 0};
    };
    t_embd = make(embd, tied_embedding_on_device ? Type::Q8_0 : Type::Q6_K, kEmbd, kVocab);
    t_q = make(wq, Type::Q4_K, kEmbd, kHeads * kHeadDim);
    t_k = make(wk, Type::IQ4_XS, kEmbd, kKvHeads * kHeadDim);
    t_v = make(wv, Type::Q5_0, kEmbd, kKvHeads * kHeadDim);
    t_o = make(wo, Type::F16, kHeads * kHeadDim, kEmbd);
    t_out = make(out, Type::Q6_K, kEmbd, kVocab);
    norm.assign(size_t(kEmbd), 1.0f);
    for (auto& v : norm) v += d(rng);
    t_norm = {Type::F32, kEmbd, 1, size_t(kEmbd) * 4, norm.data(), 0};
  }
};

// One session's device state: a KV cache and activations.
struct ToySession {
  std::unique_ptr<ops::Buffer> kv_k, kv_v, act;
  ops::KvLayer kv;
  float *x, *xn, *q, *k, *v, *att, *proj, *logits;

  explicit ToySession(ops::Backend& be) {
    const size_t kv_bytes = size_t(kCtx) * kKvHeads * kHeadDim * 2;
    kv_k = be.alloc(kv_bytes);
    kv_v = be.alloc(kv_bytes);
    kv = {ops::KvType::F16, ops::KvType::F16, kv_k->data(), kv_v->data(), kCtx, kKvHeads};
    const size_t n = size_t(kEmbd);
    act = be.alloc(8 * (5 * n + 2 * kKvHeads * kHeadDim + kVocab) * sizeof(float));
    float* p = static_cast<float*>(act->data());
    for (float** b : {&x, &xn, &q, &att, &proj}) *b = p, p += 8 * n;
    for (float** b : {&k, &v}) *b = p, p += 8 * kKvHeads * kHeadDim;
    logits = p;
  }
};

struct Prepared {
  ops::Weight embd, q, k, v, o, out, norm;
};

Prepared prepare(ops::Backend& be, const ToyModel& m, bool embedding_on_device) {
  Prepared p;
  p.embd = embedding_on_device ? be.prepare_weight(m.t_embd) : m.t_embd;
  p.q = be.prepare_weight(m.t_q);
  p.k = be.prepare_weight(m.t_k);
  p.v = be.prepare_weight(m.t_v);
  p.o = be.prepare_weight(m.t_o);
  p.out = be.prepare_weight(m.t_out);
  p.norm = be.prepare_weight(m.t_norm);
  return p;
}

// One forward step of the toy model; returns the logits of its last token.
std::vector<float> step(ops::Backend& be, const Prepared& w, ToySession& s,
                        const std::vector<int32_t>& tokens, int64_t pos0) {
  const int T = int(tokens.size());
  if (!be.begin_forward(tokens, pos0, 1)) {
    be.get_rows(w.embd, tokens, s.x);
    be.rmsnorm(s.x, w.norm, s.xn, T, kEmbd, 1e-5f);
    be.matmul(w.q, s.xn, s.q, T);
    be.matmul(w.k, s.xn, s.k, T);
    be.matmul(w.v, s.xn, s.v, T);
    ops::RopeParams rp;
    rp.mode = ops::RopeMode::Neox, rp.n_rot = kHeadDim, rp.base = 1e4f;
    be.rope(s.q, T, kHeads, kHeadDim, pos0, rp);
    be.rope(s.k, T, kKvHeads, kHeadDim, pos0, rp);
    be.kv_store(s.kv, s.k, s.v, T, pos0, kKvHeads * kHeadDim, kKvHeads * kHeadDim);
    ops::AttentionParams ap;
    ap.n_tokens = T, ap.pos0 = pos0, ap.n_heads = kHeads, ap.n_kv_heads = kKvHeads;
    ap.head_dim = ap.head_dim_v = kHeadDim, ap.scale = 0.125f;
    be.attention(s.q, s.kv, s.att, ap);
    be.matmul(w.o, s.att, s.proj, T);
    be.add(s.x, s.proj, int64_t(T) * kEmbd);
    be.rmsnorm(s.x + (T - 1) * kEmbd, w.norm, s.xn, 1, kEmbd, 1e-5f);
    be.matmul(w.out, s.xn, s.logits, 1);
  }
  be.end_forward();
  std::vector<float> out(static_cast<size_t>(kVocab));
  be.to_host(s.logits, out.data(), out.size() * sizeof(float));
  return out;
}

class CudaGraphs : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    std::string why;
    if (!cuda::cuda_available(&why))
      GTEST_SKIP() << "no usable CUDA device (" << why << "): the CUDA Graph tests need one";
  }
};

TEST_P(CudaGraphs, ReplayGivesExactlyTheOpByOpResults) {
  const bool embd_on_device = GetParam();
  const ToyModel m(embd_on_device);
  cuda::CudaOptions with, without;
  without.graphs = false;
  cuda::CudaBackend g(with), e(without);
  const Prepared wg = prepare(g, m, embd_on_device), we = prepare(e, m, embd_on_device);
  ToySession sg(g), se(e);
  // A prompt of 3 tokens, then 12 single-token steps.
  std::vector<int32_t> prompt = {3, 50, 17};
  EXPECT_EQ(step(g, wg, sg, prompt, 0), step(e, we, se, prompt, 0));
  int64_t pos = 3;
  for (int i = 0; i < 12; ++i, ++pos) {
    const std::vector<int32_t> tok = {int32_t((i * 37 + 11) % kVocab)};
    const std::vector<float> a = step(g, wg, sg, tok, pos), b = step(e, we, se, tok, pos);
    ASSERT_EQ(a, b) << "step " << i << " at position " << pos;
  }
  const cuda::CudaStats st = g.stats();
  EXPECT_EQ(st.graph_captures, 1u);  // the second single-token step
  EXPECT_EQ(st.graph_replays, 10u);  // every one after it
  EXPECT_EQ(st.graph_mismatches, 0u);
  EXPECT_EQ(e.stats().graph_captures + e.stats().graph_replays, 0u);
}

TEST_P(CudaGraphs, TwoSessionsTakingTurnsGetTheirOwnGraphs) {
  const bool embd_on_device = GetParam();
  const ToyModel m(embd_on_device);
  cuda::CudaOptions without;
  without.graphs = false;
  cuda::CudaBackend g(cuda::CudaOptions{}), e(without);
  const Prepared wg = prepare(g, m, embd_on_device), we = prepare(e, m, embd_on_device);
  ToySession ga(g), gb(g), ea(e), eb(e);
  for (int i = 0; i < 10; ++i) {
    const std::vector<int32_t> ta = {int32_t((i * 5 + 1) % kVocab)},
                               tb = {int32_t((i * 11 + 2) % kVocab)};
    ASSERT_EQ(step(g, wg, ga, ta, i), step(e, we, ea, ta, i)) << "session A, step " << i;
    ASSERT_EQ(step(g, wg, gb, tb, i), step(e, we, eb, tb, i)) << "session B, step " << i;
  }
  EXPECT_EQ(g.stats().graph_captures, 2u);  // one graph per session's buffers
  EXPECT_GE(g.stats().graph_replays, 14u);
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaGraphs, ::testing::Bool(), [](const auto& info) {
  return info.param ? std::string("DeviceTable") : std::string("HostTable");
});

#endif  // STRAW_HAVE_CUDA

}  // namespace
