// The model synthesizer (model/synth.h, model/presets.h): llama-quantize's type mix, valid random
// blocks, determinism, the presets' real shapes, and that straw runs what it writes.
#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gguf/gguf.h"
#include "model/hparams.h"
#include "model/presets.h"
#include "model/synth.h"
#include "model/tokenizer/tokenizer.h"
#include "quant/quant.h"
#include "straw/straw.h"
#include "test_util.h"

namespace {

using straw::model::Arch;
using straw::model::FileType;
using straw::model::ModelShape;
using straw::model::TensorRole;
using straw::quant::Type;

const FileType kAllTypes[] = {FileType::IQ4_XS, FileType::Q4_K_S, FileType::Q4_K_M,
                              FileType::Q5_K_M, FileType::Q6_K,   FileType::Q8_0,
                              FileType::F16};

std::string type_of(const std::vector<straw::model::TensorPlan>& plan, const std::string& name) {
  for (const auto& t : plan)
    if (t.name == name) return straw::quant::type_name(t.type);
  return "(missing)";
}

// The types of one role across the layers, space separated.
std::string per_layer(const std::vector<straw::model::TensorPlan>& plan, const char* suffix,
                      int n_layer) {
  std::string out;
  for (int i = 0; i < n_layer; ++i)
    out += (i ? " " : "") + type_of(plan, "blk." + std::to_string(i) + "." + suffix);
  return out;
}

std::string repeat(const std::string& t, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += (i ? " " : "") + t;
  return out;
}

// Tables written from llama.cpp's src/llama-quant.cpp rules (and confirmed with llama-quantize on
// files of these shapes). Shape 1 is Qwen2.5-0.5B-like: 16 layers, rows of 896 (not a multiple of
// 256: every 256-block type falls back) except ffn_down's 4864, n_gqa 7, tied embeddings.
// use_more_bits(i, 16) holds for layers 0 1 4 7 10 13 14 15; n_layer/8 = 2.
TEST(SynthTypeMix, QwenSmallTiedRowsNotMultipleOf256) {
  const ModelShape s = straw::model::custom_shape(Arch::Qwen2, 16, 896, 4864, 14, 2, 0, 1000, true);
  struct Expect {
    FileType ft;
    const char* embd;
    const char* qko;     // attn_q, attn_k, attn_output, ffn_gate, ffn_up
    const char* attn_v;  // per layer
    const char* ffn_down;
  };
  const Expect cases[] = {
      {FileType::Q4_K_M, "Q8_0", "Q5_0",
       "Q8_0 Q8_0 Q5_0 Q5_0 Q8_0 Q5_0 Q5_0 Q8_0 Q5_0 Q5_0 Q8_0 Q5_0 Q5_0 Q8_0 Q8_0 Q8_0",
       "Q6_K Q6_K Q4_K Q4_K Q6_K Q4_K Q4_K Q6_K Q4_K Q4_K Q6_K Q4_K Q4_K Q6_K Q6_K Q6_K"},
      {FileType::IQ4_XS, "Q8_0", "IQ4_NL",
       "Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1",
       "Q5_K Q5_K IQ4_XS IQ4_XS IQ4_XS IQ4_XS IQ4_XS IQ4_XS IQ4_XS IQ4_XS IQ4_XS IQ4_XS IQ4_XS "
       "IQ4_XS IQ4_XS IQ4_XS"},
      {FileType::Q4_K_S, "Q8_0", "Q5_0",
       "Q5_1 Q5_1 Q5_1 Q5_1 Q5_0 Q5_0 Q5_0 Q5_0 Q5_0 Q5_0 Q5_0 Q5_0 Q5_0 Q5_0 Q5_0 Q5_0",
       "Q5_K Q5_K Q4_K Q4_K Q4_K Q4_K Q4_K Q4_K Q4_K Q4_K Q4_K Q4_K Q4_K Q4_K Q4_K Q4_K"},
      {FileType::Q5_K_M, "Q8_0", "Q5_1",
       "Q8_0 Q8_0 Q5_1 Q5_1 Q8_0 Q5_1 Q5_1 Q8_0 Q5_1 Q5_1 Q8_0 Q5_1 Q5_1 Q8_0 Q8_0 Q8_0",
       "Q6_K Q6_K Q5_K Q5_K Q6_K Q5_K Q5_K Q6_K Q5_K Q5_K Q6_K Q5_K Q5_K Q6_K Q6_K Q6_K"},
      {FileType::Q6_K, "Q8_0", "Q8_0", nullptr, nullptr},
      {FileType::Q8_0, "Q8_0", "Q8_0", nullptr, nullptr},
      {FileType::F16, "F16", "F16", nullptr, nullptr},
  };
  for (const Expect& e : cases) {
    SCOPED_TRACE(straw::model::file_type_name(e.ft));
    const auto plan = straw::model::plan_tensors(s, e.ft);
    EXPECT_EQ(type_of(plan, "output.weight"), "(missing)");
    EXPECT_EQ(type_of(plan, "token_embd.weight"), e.embd);
    for (const char* role : {"attn_q.weight", "attn_k.weight", "attn_output.weight",
                             "ffn_gate.weight", "ffn_up.weight"})
      EXPECT_EQ(per_layer(plan, role, 16), repeat(e.qko, 16)) << role;
    const std::string same = e.ft == FileType::Q6_K ? "Q6_K" : e.qko;
    EXPECT_EQ(per_layer(plan, "attn_v.weight", 16), e.attn_v ? e.attn_v : repeat(e.qko, 16));
    EXPECT_EQ(per_layer(plan, "ffn_down.weight", 16), e.ffn_down ? e.ffn_down : repeat(same, 16));
    for (const char* role :
         {"attn_norm.weight", "ffn_norm.weight", "attn_q.bias", "attn_k.bias", "attn_v.bias"})
      EXPECT_EQ(per_layer(plan, role, 16), repeat("F32", 16)) << role;
    EXPECT_EQ(type_of(plan, "output_norm.weight"), "F32");
  }
}

// Shape 2: Llama-like, 8 layers, every row a multiple of 256, n_gqa 4, untied output.
// use_more_bits(i, 8) holds for layers 0 3 6 7; n_layer/8 = 1.
TEST(SynthTypeMix, LlamaUntiedGqa4) {
  const ModelShape s = straw::model::custom_shape(Arch::Llama, 8, 512, 1536, 8, 2, 0, 1000, false);
  struct Expect {
    FileType ft;
    const char* output;
    const char* embd;
    const char* rest;
    const char* attn_v;
    const char* ffn_down;
  };
  const Expect cases[] = {
      {FileType::Q4_K_M, "Q6_K", "Q4_K", "Q4_K", "Q6_K Q4_K Q4_K Q6_K Q4_K Q4_K Q6_K Q6_K",
       "Q6_K Q4_K Q4_K Q6_K Q4_K Q4_K Q6_K Q6_K"},
      {FileType::IQ4_XS, "Q6_K", "IQ4_XS", "IQ4_XS", "Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K",
       "Q5_K IQ4_XS IQ4_XS IQ4_XS IQ4_XS IQ4_XS IQ4_XS IQ4_XS"},
      {FileType::Q4_K_S, "Q6_K", "Q4_K", "Q4_K", "Q5_K Q5_K Q5_K Q5_K Q4_K Q4_K Q4_K Q4_K",
       "Q5_K Q4_K Q4_K Q4_K Q4_K Q4_K Q4_K Q4_K"},
      {FileType::Q5_K_M, "Q6_K", "Q5_K", "Q5_K", "Q6_K Q5_K Q5_K Q6_K Q5_K Q5_K Q6_K Q6_K",
       "Q6_K Q5_K Q5_K Q6_K Q5_K Q5_K Q6_K Q6_K"},
      {FileType::Q6_K, "Q6_K", "Q6_K", "Q6_K", nullptr, nullptr},
      {FileType::Q8_0, "Q8_0", "Q8_0", "Q8_0", nullptr, nullptr},
      {FileType::F16, "F16", "F16", "F16", nullptr, nullptr},
  };
  for (const Expect& e : cases) {
    SCOPED_TRACE(straw::model::file_type_name(e.ft));
    const auto plan = straw::model::plan_tensors(s, e.ft);
    EXPECT_EQ(type_of(plan, "output.weight"), e.output);
    EXPECT_EQ(type_of(plan, "token_embd.weight"), e.embd);
    for (const char* role : {"attn_q.weight", "attn_k.weight", "attn_output.weight",
                             "ffn_gate.weight", "ffn_up.weight"})
      EXPECT_EQ(per_layer(plan, role, 8), repeat(e.rest, 8)) << role;
    EXPECT_EQ(per_layer(plan, "attn_v.weight", 8), e.attn_v ? e.attn_v : repeat(e.rest, 8));
    EXPECT_EQ(per_layer(plan, "ffn_down.weight", 8), e.ffn_down ? e.ffn_down : repeat(e.rest, 8));
  }
}

// qwen35: llama-quantize counts each block's attn_qkv (linear layers) or attn_v (attention layers,
// MTP blocks included) as one attn_v-like tensor and each block's ffn_down as a layer; the other
// projections (attn_gate, ssm_alpha, ssm_beta, ssm_out, nextn.eh_proj) take the default type and
// ssm_conv1d stays F32. Tables from llama-quantize on straw synth F16 files of these two shapes
// (2026-12-04; the outputs were identical to straw's type plans tensor for tensor): 32 layers,
// n_gqa 4, tied (Qwen3.5-4B's pattern); 64 layers + 1 MTP block, n_gqa 6, untied (27B's).
TEST(SynthTypeMix, Qwen35MatchesLlamaQuantize) {
  using straw::model::custom_shape;
  ModelShape small = custom_shape(Arch::Qwen35, 32, 512, 1024, 4, 1, 256, 2000, true);
  ModelShape big = custom_shape(Arch::Qwen35, 64, 512, 1024, 6, 1, 256, 2000, false);
  big.n_mtp = 1;
  auto pattern = [](const char* first, int n_first, const char* cycle, int n_cycle,
                    const char* last, int n_last) {
    std::string out = repeat(first, n_first);
    for (int i = 0; i < n_cycle; ++i) out += std::string(" ") + (i % 3 == 2 ? "Q6_K" : cycle);
    return out + " " + repeat(last, n_last);
  };
  // use_more_bits(i, n): i < n/8, i >= 7n/8, or (i - n/8) % 3 == 2.
  const std::string q4km_32 = pattern("Q6_K", 4, "Q4_K", 24, "Q6_K", 4);
  const std::string q4km_65 = pattern("Q6_K", 8, "Q4_K", 48, "Q6_K", 9);
  struct Expect {
    const ModelShape* s;
    FileType ft;
    std::string v_like, ffn_down;
    const char* rest;
  };
  const Expect cases[] = {
      {&small, FileType::IQ4_XS, repeat("Q5_K", 32), repeat("Q5_K", 4) + " " + repeat("IQ4_XS", 28),
       "IQ4_XS"},
      {&small, FileType::Q4_K_M, q4km_32, q4km_32, "Q4_K"},
      {&big, FileType::IQ4_XS, repeat("Q5_K", 65), repeat("Q5_K", 8) + " " + repeat("IQ4_XS", 57),
       "IQ4_XS"},
      {&big, FileType::Q4_K_M, q4km_65, q4km_65, "Q4_K"},
  };
  for (const Expect& e : cases) {
    const int n = e.s->n_layer + e.s->n_mtp;
    SCOPED_TRACE(std::to_string(n) + " blocks " + straw::model::file_type_name(e.ft));
    const auto plan = straw::model::plan_tensors(*e.s, e.ft);
    std::string v_like;
    for (int i = 0; i < n; ++i) {
      const std::string p = "blk." + std::to_string(i) + ".";
      const bool linear = e.s->is_recurrent(i);
      v_like += (i ? " " : "") + type_of(plan, p + (linear ? "attn_qkv.weight" : "attn_v.weight"));
      for (const char* t :
           {"attn_gate.weight", "ssm_alpha.weight", "ssm_beta.weight", "ssm_out.weight"})
        EXPECT_EQ(type_of(plan, p + t), linear ? e.rest : "(missing)") << p << t;
      for (const char* t : {"attn_q.weight", "attn_k.weight", "attn_output.weight"})
        EXPECT_EQ(type_of(plan, p + t), linear ? "(missing)" : e.rest) << p << t;
      for (const char* t : {"ffn_gate.weight", "ffn_up.weight"})
        EXPECT_EQ(type_of(plan, p + t), e.rest);
      if (linear) {
        EXPECT_EQ(type_of(plan, p + "ssm_conv1d.weight"), "F32");
      }
    }
    EXPECT_EQ(v_like, e.v_like);
    EXPECT_EQ(per_layer(plan, "ffn_down.weight", n), e.ffn_down);
    EXPECT_EQ(type_of(plan, e.s->tied ? "token_embd.weight" : "output.weight"), "Q6_K");
    if (e.s->n_mtp) {
      EXPECT_EQ(type_of(plan, "blk.64.nextn.eh_proj.weight"), e.rest);
    }
  }
}

TEST(SynthTypeMix, SeventyBillionBumpAndF16Fallback) {
  // Llama with 80 layers and GQA is llama.cpp's LLM_TYPE_70B: a Q4_K attn_v becomes Q5_K.
  const ModelShape l80 =
      straw::model::custom_shape(Arch::Llama, 80, 512, 1024, 8, 2, 0, 1000, false);
  EXPECT_EQ(straw::model::quant_type_for(l80, FileType::Q4_K_M, TensorRole::AttnV, 20, 512),
            Type::Q5_K);
  EXPECT_EQ(straw::model::quant_type_for(l80, FileType::Q4_K_M, TensorRole::AttnV, 0, 512),
            Type::Q6_K);
  EXPECT_EQ(straw::model::quant_type_for(l80, FileType::Q4_K_M, TensorRole::AttnQ, 20, 512),
            Type::Q4_K);
  // Qwen3 with 80 layers is not 70B for llama.cpp.
  const ModelShape q80 =
      straw::model::custom_shape(Arch::Qwen3, 80, 512, 1024, 8, 2, 0, 1000, false);
  EXPECT_EQ(straw::model::quant_type_for(q80, FileType::Q4_K_M, TensorRole::AttnV, 20, 512),
            Type::Q4_K);
  // Rows that no 32-block divides end at F16.
  EXPECT_EQ(straw::model::quant_type_for(l80, FileType::Q4_K_M, TensorRole::AttnQ, 20, 200),
            Type::F16);
  EXPECT_EQ(straw::model::quant_type_for(l80, FileType::Q8_0, TensorRole::Output, -1, 200),
            Type::F16);
}

TEST(SynthTypeMix, FileTypeNames) {
  for (FileType ft : kAllTypes)
    EXPECT_EQ(straw::model::file_type_from_name(straw::model::file_type_name(ft)), ft);
  EXPECT_EQ(straw::model::file_type_from_name("q4_k_m"), FileType::Q4_K_M);
  EXPECT_FALSE(straw::model::file_type_from_name("Q4_K"));
  EXPECT_EQ(static_cast<uint32_t>(FileType::Q4_K_M), 15u);
  EXPECT_EQ(static_cast<uint32_t>(FileType::IQ4_XS), 30u);
}

struct Stats {
  double mean = 0, std = 0, max_abs = 0;
  bool finite = true;
};

Stats stats_of(const std::vector<float>& y) {
  Stats s;
  double sum = 0, sq = 0;
  for (float v : y) {
    if (!std::isfinite(v)) s.finite = false;
    sum += v;
    sq += double(v) * v;
    s.max_abs = std::max(s.max_abs, double(std::fabs(v)));
  }
  s.mean = sum / double(y.size());
  s.std = std::sqrt(sq / double(y.size()) - s.mean * s.mean);
  return s;
}

TEST(SynthBlocks, EveryFormatHasTheTargetSpread) {
  const float sigma = 0.02f;
  for (Type t : {Type::F32, Type::F16, Type::Q8_0, Type::Q5_0, Type::Q5_1, Type::IQ4_NL,
                 Type::IQ4_XS, Type::Q4_K, Type::Q5_K, Type::Q6_K}) {
    SCOPED_TRACE(straw::quant::type_name(t));
    const int64_t n = 256 * 256;
    const auto& ti = straw::quant::type_info(t);
    std::vector<uint8_t> buf(straw::quant::row_bytes(t, n) + 64);
    straw::model::random_blocks(t, buf.data(), n / ti.block_size, 42, sigma);
    std::vector<float> y(n);
    straw::quant::dequantize_row(t, buf.data(), y.data(), n);
    const Stats s = stats_of(y);
    EXPECT_TRUE(s.finite);
    EXPECT_NEAR(s.std, sigma, 0.2 * sigma);
    EXPECT_LT(std::fabs(s.mean), 0.05 * sigma);
    EXPECT_LT(s.max_abs, 0.2);
  }
  std::vector<uint8_t> buf(64);
  EXPECT_THROW(straw::model::random_blocks(Type::Q2_K, buf.data(), 0, 1, 0.02f), straw::Error);
}

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ModelShape tiny(Arch arch, bool tied) {
  // 256-wide rows so that every file type keeps its own types; 2 layers; 512 tokens; Llama with
  // Llama 3.1's rope factors.
  ModelShape s =
      straw::model::custom_shape(arch, 2, 256, 512, 4, 2, arch == Arch::Qwen3 ? 128 : 0, 512, tied);
  s.llama3_rope_freqs = arch == Arch::Llama;
  return s;
}

std::filesystem::path write_model(const std::string& name, const ModelShape& s, FileType ft,
                                  uint64_t seed = 7, int threads = 2, bool no_data = false) {
  const auto path = straw::test::temp_path(name);
  straw::model::SynthOptions o;
  o.shape = s;
  o.type = ft;
  o.seed = seed;
  o.threads = threads;
  o.no_data = no_data;
  straw::model::synthesize(path.string(), o);
  return path;
}

TEST(SynthFile, SameSeedSameBytesAnyThreadCount) {
  // Matrices of several 1 MiB generator chunks, so that the threads share tensors.
  const ModelShape s = straw::model::custom_shape(Arch::Qwen2, 1, 1024, 4096, 8, 2, 0, 4096, false);
  const auto a = write_model("det-a.gguf", s, FileType::Q4_K_M, 11, 1);
  const auto b = write_model("det-b.gguf", s, FileType::Q4_K_M, 11, 3);
  const auto c = write_model("det-c.gguf", s, FileType::Q4_K_M, 12, 2);
  const std::string ba = read_all(a), bb = read_all(b), bc = read_all(c);
  EXPECT_GT(ba.size(), 10000000u);
  EXPECT_TRUE(ba == bb) << "the same seed must give the same bytes, whatever the thread count";
  ASSERT_EQ(ba.size(), bc.size());  // only the seed differs: same layout
  EXPECT_FALSE(ba == bc) << "another seed must give other weights";
  for (const auto& p : {a, b, c}) std::filesystem::remove(p);
}

// Every block of every tensor of a small model of each file type dequantizes to finite values in
// range: weights |y| < 0.2 with a spread near 0.02, norms in [0.9, 1.1], biases small.
TEST(SynthFile, EveryBlockOfEveryTensorIsValid) {
  for (FileType ft : kAllTypes) {
    for (Arch arch : {Arch::Qwen2, Arch::Qwen3, Arch::Llama}) {
      SCOPED_TRACE(std::string(straw::model::file_type_name(ft)) + " " +
                   straw::model::arch_name(arch));
      const ModelShape s = tiny(arch, arch != Arch::Qwen2);
      const auto path = write_model("valid.gguf", s, ft);
      auto r = straw::gguf::Reader::open(path.string());
      EXPECT_EQ(r->get_u32("general.file_type"), static_cast<uint32_t>(ft));
      EXPECT_EQ(r->get_u32("general.quantization_version"), 2u);
      const auto plan = straw::model::plan_tensors(s, ft);
      ASSERT_EQ(r->tensors().size(), plan.size());
      for (size_t i = 0; i < plan.size(); ++i) {
        const auto& t = r->tensors()[i];
        ASSERT_EQ(t.name, plan[i].name);
        ASSERT_EQ(t.type, plan[i].type) << t.name;
        std::vector<float> y(static_cast<size_t>(t.n_elements()));
        const size_t row = straw::quant::row_bytes(t.type, t.ne[0]);
        for (int64_t k = 0; k < t.n_rows(); ++k)
          straw::quant::dequantize_row(t.type, t.data + k * row, y.data() + k * t.ne[0], t.ne[0]);
        const Stats st = stats_of(y);
        ASSERT_TRUE(st.finite) << t.name;
        if (t.name.find("norm") != std::string::npos) {
          for (float v : y) ASSERT_TRUE(v >= 0.9f && v <= 1.1f) << t.name;
        } else if (t.name == "rope_freqs.weight") {
          for (float v : y) ASSERT_TRUE(v >= 1.0f && v <= 8.0f) << t.name;
        } else if (t.n_dims == 1) {
          EXPECT_LT(st.max_abs, 0.2) << t.name;
        } else {
          EXPECT_LT(st.max_abs, 0.2) << t.name;
          EXPECT_NEAR(st.std, 0.02, 0.005) << t.name;
        }
      }
      EXPECT_EQ(r->find_tensor("rope_freqs.weight") != nullptr, arch == Arch::Llama);
      r.reset();
      std::filesystem::remove(path);
    }
  }
}

// The presets have the real models' shapes and parameter counts (the model cards' numbers), and
// their --no-data files are sparse.
TEST(SynthPresets, ShapesMatchTheRealModels) {
  const std::map<std::string, int64_t> params = {
      {"qwen2.5-0.5b", 494032768LL},
      {"qwen2.5-1.5b", 1543714304LL},
      {"qwen2.5-7b", 7615616512LL},
      {"qwen2.5-14b", 14770033664LL},
      {"qwen2.5-32b", 32763876352LL},
      {"llama-3.1-8b", 8030261248LL},
      {"qwen3-8b", 8190735360LL},
      {"qwen3-32b", 32762123264LL},
      // The sum of the text model's tensor shapes from config.json (the cards say 4B and 27B,
      // counting the vision encoder and the MTP layer too).
      {"qwen3.5-4b", 4205751296LL},
      {"qwen3.5-27b", 26895998464LL},
      {"qwen3-30b-a3b", 30532122624LL},    // the model card's count
      {"qwen3.5-35b-a3b", 34660610688LL},  // text model (the card's 35B adds vision and MTP)
  };
  ASSERT_EQ(straw::model::presets().size(), params.size());
  for (const ModelShape& s : straw::model::presets()) {
    SCOPED_TRACE(s.name);
    ASSERT_TRUE(params.count(s.name));
    EXPECT_EQ(s.n_params(), params.at(s.name));
    const auto path = write_model("preset.gguf", s, FileType::IQ4_XS, 0, 2, true);
    auto r = straw::gguf::Reader::open(path.string());
    const straw::model::HParams hp = straw::model::read_hparams(*r);
    EXPECT_EQ(hp.n_layer, s.n_layer);
    EXPECT_EQ(hp.n_embd, s.n_embd);
    EXPECT_EQ(hp.n_ff, s.n_ff);
    EXPECT_EQ(hp.n_head, s.n_head);
    EXPECT_EQ(hp.n_head_kv, s.n_head_kv);
    EXPECT_EQ(hp.head_dim, s.head_dim);
    EXPECT_EQ(hp.n_ctx_train, s.n_ctx_train);
    EXPECT_FLOAT_EQ(hp.rope.base, s.rope_base);
    int64_t elements = 0;
    for (const auto& t : r->tensors())
      if (t.name != "rope_freqs.weight") elements += t.n_elements();
    EXPECT_EQ(elements, s.n_params());
    EXPECT_EQ(r->tensor("token_embd.weight").ne[1], s.n_vocab);
    EXPECT_EQ(r->find_tensor("output.weight") == nullptr, s.tied);
    // The tokenizer loads and its special tokens sit at the real ids.
    auto tok = straw::model::Tokenizer::from_gguf(*r);
    EXPECT_EQ(tok->n_vocab(), s.n_vocab);
    if (s.vocab == straw::model::VocabStyle::Qwen) {
      EXPECT_EQ(tok->find_token("<|endoftext|>"), 151643);
      EXPECT_EQ(tok->find_token("<|im_end|>"), 151645);
      EXPECT_EQ(tok->eos(), 151645);
    } else if (s.vocab == straw::model::VocabStyle::Qwen35) {
      EXPECT_EQ(tok->find_token("<|endoftext|>"), 248044);
      EXPECT_EQ(tok->find_token("<|im_start|>"), 248045);
      EXPECT_EQ(tok->eos(), 248046);
      EXPECT_EQ(hp.rope.n_rot, s.n_rot);
      EXPECT_EQ(hp.ssm_v_heads, s.ssm_v_heads);
      EXPECT_EQ(hp.ssm_k_heads, s.ssm_k_heads);
      EXPECT_EQ(hp.ssm_head_dim, s.ssm_head_dim);
      for (int i = 0; i < s.n_layer; ++i) EXPECT_EQ(hp.is_recurrent(i), (i + 1) % 4 != 0);
    } else {
      EXPECT_EQ(tok->bos(), 128000);
      EXPECT_EQ(tok->find_token("<|eot_id|>"), 128009);
    }
    // Sparse: the data section takes (almost) no blocks on disk.
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_GT(static_cast<uint64_t>(st.st_size), uint64_t(200) << 20);
    EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t(64) << 20);
    r.reset();
    std::filesystem::remove(path);
  }
}

TEST(SynthPresets, RejectsBadShapes) {
  using straw::model::custom_shape;
  EXPECT_THROW(
      straw::model::check_shape(custom_shape(Arch::Qwen2, 2, 256, 512, 6, 4, 0, 512, false)),
      straw::Error);  // 6 heads, 4 kv heads
  EXPECT_THROW(
      straw::model::check_shape(custom_shape(Arch::Qwen2, 2, 256, 512, 4, 2, 0, 100, false)),
      straw::Error);  // vocabulary too small
  EXPECT_THROW(
      straw::model::check_shape(custom_shape(Arch::Qwen2, 0, 256, 512, 4, 2, 0, 512, false)),
      straw::Error);
  EXPECT_NO_THROW(
      straw::model::check_shape(custom_shape(Arch::Qwen2, 2, 256, 512, 4, 2, 0, 512, false)));
}

// straw loads what the synthesizer writes and generates with finite, O(1) logits.
TEST(SynthFile, StrawLoadsAndGenerates) {
  for (Arch arch : {Arch::Qwen2, Arch::Qwen3, Arch::Llama}) {
    for (FileType ft : {FileType::Q4_K_M, FileType::IQ4_XS}) {
      SCOPED_TRACE(std::string(straw::model::arch_name(arch)) + " " +
                   straw::model::file_type_name(ft));
      const auto path = write_model("gen.gguf", tiny(arch, arch == Arch::Qwen3), ft);
      {
        auto model = straw::Model::load({.path = path.string(), .threads = 2, .ctx = 64});
        EXPECT_EQ(model->n_vocab(), 512);
        EXPECT_TRUE(model->has_chat_template());
        const std::string text = "hello world, the cat";
        const auto ids = model->tokenize(text, false, false);
        EXPECT_EQ(model->detokenize(ids), text);
        straw::Session session(*model);
        session.eval(ids);
        const auto logits = session.logits();
        const Stats st = stats_of({logits.begin(), logits.end()});
        EXPECT_TRUE(st.finite);
        EXPECT_LT(st.max_abs, 30.0);
        EXPECT_GT(st.std, 0.01);
        straw::GenerateOptions g;
        g.n_predict = 6;
        g.sampling.temperature = 0.0f;
        g.stop_at_eog = false;
        const auto res = straw::generate(session, std::vector<int32_t>{ids.back()}, g, nullptr);
        EXPECT_EQ(res.tokens.size(), 6u);
      }
      std::filesystem::remove(path);
    }
  }
}

// qwen35 files load and run; MTP / NextN blocks after the layers are skipped: a file with one
// gives the logits of the same file without it, bit for bit (the seeds are per tensor name), when
// the type mix is the same.
TEST(SynthFile, Qwen35RunsAndSkipsMtpBlocks) {
  ModelShape s = straw::model::custom_shape(Arch::Qwen35, 4, 256, 512, 2, 1, 128, 600, true);
  ModelShape with_mtp = s;
  with_mtp.n_mtp = 1;
  for (FileType ft : {FileType::Q4_K_M, FileType::IQ4_XS, FileType::F16}) {
    SCOPED_TRACE(straw::model::file_type_name(ft));
    std::vector<std::vector<float>> logits;
    for (const ModelShape* shape : {&s, &with_mtp}) {
      const auto path = write_model("q35.gguf", *shape, ft);
      {
        auto model = straw::Model::load({.path = path.string(), .threads = 2, .ctx = 64});
        EXPECT_EQ(model->info().architecture, "qwen35");
        EXPECT_EQ(model->info().n_layer, 4);
        const auto ids = model->tokenize("hello world, the cat sat", false, false);
        straw::Session session(*model);
        session.eval(ids);
        logits.emplace_back(session.logits().begin(), session.logits().end());
        const Stats st = stats_of(logits.back());
        EXPECT_TRUE(st.finite);
        EXPECT_GT(st.std, 0.01);
      }
      std::filesystem::remove(path);
    }
    // Q4_K_M's type mix counts the MTP block as a layer (use_more_bits over 5 blocks instead of
    // 4), so some weights have other types there; F16 and IQ4_XS keep every type.
    if (ft != FileType::Q4_K_M) {
      EXPECT_EQ(logits[0], logits[1]);
    }
  }
}

}  // namespace
