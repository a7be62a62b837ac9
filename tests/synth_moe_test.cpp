// The synthesizer on mixture-of-experts shapes: the qwen3-30b-a3b preset's tensors and
// llama-quantize's type mix, --layers (the first N layers, typed as in the full model), the
// 8-expert rules against the llama-quantize files in shared/testdata, and a synthetic MoE file
// that straw loads and runs.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "gguf/gguf.h"
#include "model/hparams.h"
#include "model/presets.h"
#include "model/synth.h"
#include "quant/types.h"
#include "straw/straw.h"
#include "test_util.h"

namespace {

using straw::model::Arch;
using straw::model::FileType;
using straw::model::ModelShape;
using straw::model::TensorPlan;
using straw::quant::Type;

const ModelShape& a3b() {
  const ModelShape* s = straw::model::find_preset("qwen3-30b-a3b");
  EXPECT_NE(s, nullptr);
  return *s;
}

std::map<std::string, Type> types_of(const std::vector<TensorPlan>& plan) {
  std::map<std::string, Type> m;
  for (const TensorPlan& t : plan) m[t.name] = t.type;
  return m;
}

TEST(SynthMoe, Qwen3A3BPresetHasTheRealShape) {
  const ModelShape& s = a3b();
  EXPECT_EQ(s.arch, Arch::Qwen3Moe);
  EXPECT_EQ(s.n_layer, 48);
  EXPECT_EQ(s.n_embd, 2048);
  EXPECT_EQ(s.n_head, 32);
  EXPECT_EQ(s.n_head_kv, 4);
  EXPECT_EQ(s.head_dim, 128);
  EXPECT_EQ(s.n_expert, 128);
  EXPECT_EQ(s.n_expert_used, 8);
  EXPECT_EQ(s.n_ff_exp, 768);
  EXPECT_EQ(s.n_vocab, 151936);
  EXPECT_FLOAT_EQ(s.rope_base, 1e6f);
  EXPECT_FLOAT_EQ(s.rms_eps, 1e-6f);
  EXPECT_FALSE(s.tied);
  EXPECT_EQ(s.n_params(), 30532122624LL);  // the model card
  const auto plan = straw::model::plan_tensors(s, FileType::IQ4_XS);
  int64_t elements = 0;
  for (const TensorPlan& t : plan) elements += t.n_elements();
  EXPECT_EQ(elements, s.n_params());
  // No dense FFN and no shared expert; 3-D experts.
  const auto types = types_of(plan);
  EXPECT_EQ(types.count("blk.0.ffn_up.weight"), 0u);
  EXPECT_EQ(types.count("blk.0.ffn_up_shexp.weight"), 0u);
  for (const TensorPlan& t : plan) {
    if (t.name == "blk.0.ffn_down_exps.weight") {
      EXPECT_EQ(t.ne, (std::vector<int64_t>{768, 2048, 128}));
    }
  }
}

// llama-quantize's IQ4_XS: attn_v Q5_K (4+ query heads per KV head), ffn_down (and so
// ffn_down_exps) Q5_K in the first n_layer/8 layers, output Q6_K, routers F32, the rest IQ4_XS.
TEST(SynthMoe, Qwen3A3BIq4XsTypeMix) {
  const auto t = types_of(straw::model::plan_tensors(a3b(), FileType::IQ4_XS));
  EXPECT_EQ(t.at("token_embd.weight"), Type::IQ4_XS);
  EXPECT_EQ(t.at("output.weight"), Type::Q6_K);
  for (int i = 0; i < 48; ++i) {
    SCOPED_TRACE(i);
    const std::string p = "blk." + std::to_string(i) + ".";
    EXPECT_EQ(t.at(p + "attn_q.weight"), Type::IQ4_XS);
    EXPECT_EQ(t.at(p + "attn_k.weight"), Type::IQ4_XS);
    EXPECT_EQ(t.at(p + "attn_v.weight"), Type::Q5_K);
    EXPECT_EQ(t.at(p + "attn_output.weight"), Type::IQ4_XS);
    EXPECT_EQ(t.at(p + "ffn_gate_inp.weight"), Type::F32);
    EXPECT_EQ(t.at(p + "ffn_gate_exps.weight"), Type::IQ4_XS);
    EXPECT_EQ(t.at(p + "ffn_up_exps.weight"), Type::IQ4_XS);
    EXPECT_EQ(t.at(p + "ffn_down_exps.weight"), i < 6 ? Type::Q5_K : Type::IQ4_XS);
  }
}

// Q4_K_M: attn_v and ffn_down(_exps) Q6_K in use_more_bits layers (the first and last eighth and
// every third between), the rest Q4_K; output Q6_K.
TEST(SynthMoe, Qwen3A3BQ4KmTypeMix) {
  const auto t = types_of(straw::model::plan_tensors(a3b(), FileType::Q4_K_M));
  EXPECT_EQ(t.at("token_embd.weight"), Type::Q4_K);
  EXPECT_EQ(t.at("output.weight"), Type::Q6_K);
  int q6 = 0;
  for (int i = 0; i < 48; ++i) {
    SCOPED_TRACE(i);
    const std::string p = "blk." + std::to_string(i) + ".";
    const bool more = i < 6 || i >= 42 || (i - 6) % 3 == 2;
    q6 += more;
    EXPECT_EQ(t.at(p + "attn_v.weight"), more ? Type::Q6_K : Type::Q4_K);
    EXPECT_EQ(t.at(p + "ffn_down_exps.weight"), more ? Type::Q6_K : Type::Q4_K);
    EXPECT_EQ(t.at(p + "ffn_gate_exps.weight"), Type::Q4_K);
    EXPECT_EQ(t.at(p + "attn_k.weight"), Type::Q4_K);
    EXPECT_EQ(t.at(p + "ffn_gate_inp.weight"), Type::F32);
  }
  EXPECT_EQ(q6, 24);
}

// --layers N: the first N layers with the full model's types (its layer count drives the rules).
TEST(SynthMoe, FirstLayersKeepTheFullModelsTypes) {
  const ModelShape six = straw::model::first_layers(a3b(), 6);
  EXPECT_EQ(six.n_layer, 6);
  EXPECT_EQ(six.quant_n_layer, 48);
  EXPECT_EQ(six.n_expert, 128);
  for (FileType ft : {FileType::IQ4_XS, FileType::Q4_K_M}) {
    const auto full = types_of(straw::model::plan_tensors(a3b(), ft));
    const auto part = straw::model::plan_tensors(six, ft);
    for (const TensorPlan& t : part) {
      EXPECT_LT(t.layer, 6) << t.name;
      EXPECT_EQ(t.type, full.at(t.name)) << t.name;
    }
    EXPECT_EQ(part.size(), 3 + 6 * 12u);  // token_embd, output_norm, output; 12 per layer
  }
  EXPECT_THROW(straw::model::first_layers(a3b(), 0), straw::Error);
  EXPECT_THROW(straw::model::first_layers(a3b(), 49), straw::Error);
  // Header only: straw reads it as a 6-layer qwen3moe of the real width.
  const auto path = straw::test::temp_path("a3b-6.gguf");
  straw::model::SynthOptions o;
  o.shape = six;
  o.type = FileType::IQ4_XS;
  o.no_data = true;
  straw::model::synthesize(path.string(), o);
  auto r = straw::gguf::Reader::open(path.string());
  const straw::model::HParams hp = straw::model::read_hparams(*r);
  EXPECT_EQ(hp.n_layer, 6);
  EXPECT_EQ(hp.n_expert, 128);
  EXPECT_EQ(hp.n_expert_used, 8);
  EXPECT_EQ(hp.n_ff_exp, 768);
  r.reset();
  std::filesystem::remove(path);
}

// The synthesizer's tensor list equals a real file's: names, types, element counts.
void expect_same_tensors(const std::vector<TensorPlan>& plan, const straw::gguf::Reader& r) {
  EXPECT_EQ(plan.size(), r.tensors().size());
  for (const TensorPlan& t : plan) {
    const auto* real = r.find_tensor(t.name);
    ASSERT_NE(real, nullptr) << t.name;
    EXPECT_EQ(t.type, real->type) << t.name;
    EXPECT_EQ(t.n_elements(), real->n_elements()) << t.name;
  }
}

// The 8-expert rules (attn_k / attn_v Q8_0, attn_output Q5_K) and everything else against the
// files llama-quantize made (shared/testdata qwen3moe-tiny: 3 layers, 8 experts).
TEST(SynthMoe, TypesMatchLlamaQuantizeOnTheTinyFiles) {
  STRAW_REQUIRE_TESTDATA();
  for (auto [file, ft] : {std::pair{"qwen3moe-tiny-iq4_xs.gguf", FileType::IQ4_XS},
                          std::pair{"qwen3moe-tiny-q4_k_m.gguf", FileType::Q4_K_M}}) {
    SCOPED_TRACE(file);
    auto r = straw::gguf::Reader::open((straw::test::testdata_dir() / "models" / file).string());
    const straw::model::HParams hp = straw::model::read_hparams(*r);
    ModelShape s = straw::model::custom_shape(
        Arch::Qwen3Moe, hp.n_layer, hp.n_embd, hp.n_ff, hp.n_head, hp.n_head_kv, hp.head_dim,
        r->tensor("token_embd.weight").ne[1], r->find_tensor("output.weight") == nullptr);
    s.n_expert = hp.n_expert;
    s.n_expert_used = hp.n_expert_used;
    s.n_ff_exp = hp.n_ff_exp;
    expect_same_tensors(straw::model::plan_tensors(s, ft), *r);
  }
}

// qwen35moe: the same against qwen35moe-tiny (Gated DeltaNet layers, 8 experts and a shared expert,
// whose ffn_down_shexp llama-quantize types as ffn_down).
TEST(SynthMoe, Qwen35MoeTypesMatchLlamaQuantizeOnTheTinyFiles) {
  STRAW_REQUIRE_TESTDATA();
  for (auto [file, ft] : {std::pair{"qwen35moe-tiny-iq4_xs.gguf", FileType::IQ4_XS},
                          std::pair{"qwen35moe-tiny-q4_k_m.gguf", FileType::Q4_K_M}}) {
    SCOPED_TRACE(file);
    auto r = straw::gguf::Reader::open((straw::test::testdata_dir() / "models" / file).string());
    const straw::model::HParams hp = straw::model::read_hparams(*r);
    ModelShape s = straw::model::custom_shape(
        Arch::Qwen35Moe, hp.n_layer, hp.n_embd, hp.n_ff, hp.n_head, hp.n_head_kv, hp.head_dim,
        r->tensor("token_embd.weight").ne[1], r->find_tensor("output.weight") == nullptr);
    s.n_rot = hp.rope.n_rot;
    s.ssm_conv_kernel = hp.ssm_conv_kernel;
    s.ssm_head_dim = hp.ssm_head_dim;
    s.ssm_k_heads = hp.ssm_k_heads;
    s.ssm_v_heads = hp.ssm_v_heads;
    s.full_attention_interval = static_cast<int>(r->get_u32("qwen35moe.full_attention_interval"));
    s.n_expert = hp.n_expert;
    s.n_expert_used = hp.n_expert_used;
    s.n_ff_exp = hp.n_ff_exp;
    s.n_ff_shexp = hp.n_ff_shexp;
    expect_same_tensors(straw::model::plan_tensors(s, ft), *r);
  }
}

// The qwen3.5-35b-a3b preset: its 3-D experts, shared expert and what straw reads back.
TEST(SynthMoe, Qwen35A3BPresetReadsBack) {
  const ModelShape* s = straw::model::find_preset("qwen3.5-35b-a3b");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->arch, Arch::Qwen35Moe);
  const auto t = types_of(straw::model::plan_tensors(*s, FileType::IQ4_XS));
  EXPECT_EQ(t.at("blk.0.ffn_gate_inp_shexp.weight"), Type::F32);
  EXPECT_EQ(t.at("blk.0.ffn_down_shexp.weight"), Type::Q5_K);  // first n_layer/8 layers
  EXPECT_EQ(t.at("blk.10.ffn_down_shexp.weight"), Type::IQ4_XS);
  EXPECT_EQ(t.at("blk.3.attn_q.weight"), Type::IQ4_XS);
  EXPECT_EQ(t.count("blk.0.attn_q.weight"), 0u);  // a linear-attention layer
  const auto path = straw::test::temp_path("a35b-4.gguf");
  straw::model::SynthOptions o;
  o.shape = straw::model::first_layers(*s, 4);
  o.type = FileType::IQ4_XS;
  o.no_data = true;
  straw::model::synthesize(path.string(), o);
  auto r = straw::gguf::Reader::open(path.string());
  const straw::model::HParams hp = straw::model::read_hparams(*r);
  EXPECT_EQ(hp.arch, Arch::Qwen35Moe);
  EXPECT_EQ(hp.n_layer, 4);
  EXPECT_EQ(hp.n_expert, 256);
  EXPECT_EQ(hp.n_expert_used, 8);
  EXPECT_EQ(hp.n_ff_exp, 512);
  EXPECT_EQ(hp.n_ff_shexp, 512);
  EXPECT_EQ(hp.ssm_v_heads, 32);
  r.reset();
  std::filesystem::remove(path);
}

// Small synthetic MoE files (qwen3moe; qwen35moe with a shared expert) load and generate finite
// logits.
TEST(SynthMoe, StrawRunsASyntheticMoeFile) {
  for (auto [arch, ft] :
       {std::pair{Arch::Qwen3Moe, FileType::Q4_K_M}, std::pair{Arch::Qwen3Moe, FileType::IQ4_XS},
        std::pair{Arch::Qwen35Moe, FileType::Q4_K_M}}) {
    SCOPED_TRACE(std::string(straw::model::arch_name(arch)) + " " +
                 straw::model::file_type_name(ft));
    ModelShape s = straw::model::custom_shape(arch, 4, 256, 512, 4, 2, 64, 512, false);
    s.n_expert = 8;
    s.n_expert_used = 2;
    s.n_ff_exp = 128;
    s.n_ff_shexp = arch == Arch::Qwen35Moe ? 128 : 0;
    straw::model::check_shape(s);
    ModelShape bad = s;
    bad.n_expert_used = 9;
    EXPECT_THROW(straw::model::check_shape(bad), straw::Error);
    const auto path = straw::test::temp_path("moe-gen.gguf");
    straw::model::SynthOptions o;
    o.shape = s;
    o.type = ft;
    o.threads = 2;
    straw::model::synthesize(path.string(), o);
    {
      auto model = straw::Model::load({.path = path.string(), .threads = 2, .ctx = 64});
      EXPECT_EQ(model->info().architecture, straw::model::arch_name(arch));
      straw::Session session(*model);
      session.eval(model->tokenize("hello world, the cat", false, false));
      const auto logits = session.logits();
      double sum2 = 0;
      for (float x : logits) {
        ASSERT_TRUE(std::isfinite(x));
        sum2 += double(x) * x;
      }
      EXPECT_GT(sum2, 0.0);
    }
    std::filesystem::remove(path);
  }
}

}  // namespace
