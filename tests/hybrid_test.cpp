// Cross-device execution: a model split over two backends (two CPU backends here, standing in for
// CPU + GPU) computes exactly what one backend computes, with activations copied at every
// boundary and each layer's KV cache living with its attention.
#include <gtest/gtest.h>

#include <optional>

#include "cpu/cpu_backend.h"
#include "gguf/gguf.h"
#include "model/hparams.h"
#include "model/recurrent_state.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "sched/plan.h"
#include "test_util.h"

namespace {

using namespace straw;

std::vector<float> run(const model::HParams& hp, const gguf::Reader& r, const model::DeviceMap& d,
                       const std::vector<int32_t>& prompt) {
  model::Weights w = model::bind_weights(r, hp);
  model::prepare_weights(w, d);
  model::KvCache kv(hp, 64, ops::KvType::F16, ops::KvType::F16, d);
  std::optional<model::RecurrentState> rs;
  if (hp.has_recurrent()) rs.emplace(hp, d);
  model::RecurrentState* state = rs ? &*rs : nullptr;
  model::Transformer tf(hp, w, d, 8);
  std::vector<float> logits(size_t(hp.n_vocab) * (prompt.size() + 2));
  // The prompt in two micro-batches (8 + rest), then two single-token decode steps.
  tf.forward(std::span(prompt).subspan(0, 8), 0, kv, logits.data(), true, state);
  tf.forward(std::span(prompt).subspan(8), 8, kv, logits.data() + 8 * hp.n_vocab, true, state);
  const int32_t next[2] = {5, 7};
  for (int i = 0; i < 2; ++i)
    tf.forward(std::span(next + i, 1), int64_t(prompt.size()) + i, kv,
               logits.data() + (prompt.size() + i) * hp.n_vocab, false, state);
  return logits;
}

const std::vector<int32_t> kPrompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

model::HParams hparams_of(const gguf::Reader& r) {
  model::HParams hp = model::read_hparams(r);
  hp.n_vocab = r.tensor("token_embd.weight").n_rows();
  return hp;
}

void expect_same(const std::vector<float>& got, const std::vector<float>& ref, const char* what) {
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(got[i], ref[i]) << what << " at " << i;
}

TEST(Hybrid, SplitAcrossTwoBackendsEqualsOneBackend) {
  STRAW_REQUIRE_TESTDATA();
  for (const char* name :
       {"qwen2-tiny-q4_k_m.gguf", "llama-tiny-iq4_xs.gguf", "qwen3-tiny-f16.gguf"}) {
    auto r = gguf::Reader::open((test::testdata_dir() / "models" / name).string());
    const model::HParams hp = hparams_of(*r);
    cpu::CpuBackend a(2), b(2);

    const std::vector<float> ref = run(hp, *r, model::DeviceMap::single(a, hp.n_layer), kPrompt);

    // Alternate every unit between the backends: attention on a, FFN on b in even layers and the
    // other way round in odd ones; the output on b.
    model::DeviceMap split = model::DeviceMap::single(a, hp.n_layer);
    for (int i = 0; i < hp.n_layer; ++i) {
      split.attn[i] = i % 2 ? &b : &a;
      split.ffn[i] = i % 2 ? &a : &b;
    }
    split.output = &b;
    expect_same(run(hp, *r, split, kPrompt), ref, name);
  }
}

// Mixture-of-experts FFNs with their experts on another backend than the router and the shared
// expert (llama.cpp's --cpu-moe with the rest on the GPU): the routed tokens cross over and the
// weighted sum comes back, and the result is the single backend's, bit for bit.
TEST(Hybrid, MoeExpertsOnAnotherBackendEqualOneBackend) {
  STRAW_REQUIRE_TESTDATA();
  for (const char* name : {"qwen3moe-tiny-q4_k_m.gguf", "qwen35moe-tiny-iq4_xs.gguf"}) {
    auto r = gguf::Reader::open((test::testdata_dir() / "models" / name).string());
    const model::HParams hp = hparams_of(*r);
    cpu::CpuBackend a(2), b(2);
    const std::vector<float> ref = run(hp, *r, model::DeviceMap::single(a, hp.n_layer), kPrompt);

    // Every layer's experts on b, everything else on a.
    model::DeviceMap experts_apart = model::DeviceMap::single(a, hp.n_layer);
    experts_apart.experts.assign(size_t(hp.n_layer), &b);
    expect_same(run(hp, *r, experts_apart, kPrompt), ref, name);

    // Mixed: the FFN of odd layers on b with their experts on a, even layers' experts on b,
    // attention alternating, the output on b.
    model::DeviceMap mixed = model::DeviceMap::single(a, hp.n_layer);
    for (int i = 0; i < hp.n_layer; ++i) {
      mixed.attn[i] = i % 2 ? &a : &b;
      mixed.ffn[i] = i % 2 ? &b : &a;
      mixed.experts[i] = i % 2 ? &a : &b;
    }
    mixed.output = &b;
    expect_same(run(hp, *r, mixed, kPrompt), ref, name);
  }
}

// The planner's KV bytes (what straw plan prints and Model::load's memory check counts) equal what
// a session's cache allocates, for every pair of K and V types.
TEST(KvCache, AllocationEqualsThePlan) {
  STRAW_REQUIRE_TESTDATA();
  auto r = gguf::Reader::open((test::testdata_dir() / "models" / "qwen3-tiny-f16.gguf").string());
  model::HParams hp = model::read_hparams(*r);
  hp.n_vocab = r->tensor("token_embd.weight").n_rows();
  cpu::CpuBackend be(1);
  const model::DeviceMap d = model::DeviceMap::single(be, hp.n_layer);
  const std::pair<ops::KvType, sched::KvType> types[] = {{ops::KvType::F32, sched::KvType::F32},
                                                         {ops::KvType::F16, sched::KvType::F16},
                                                         {ops::KvType::Q8_0, sched::KvType::Q8_0},
                                                         {ops::KvType::Q4_0, sched::KvType::Q4_0}};
  for (const auto& [ok, sk] : types)
    for (const auto& [ov, sv] : types) {
      const int64_t ctx = 1000;
      const model::KvCache kv(hp, ctx, ok, ov, d);
      EXPECT_EQ(kv.bytes(),
                hp.n_layer * sched::kv_layer_bytes(model::plan_shape(hp, hp.n_vocab), ctx, sk, sv))
          << ops::kv_type_name(ok) << " / " << ops::kv_type_name(ov);
    }
}

}  // namespace
