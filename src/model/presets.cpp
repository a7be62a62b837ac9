#include "model/presets.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "util/str.h"

namespace straw::model {

namespace {

// Hyperparameters from the models' Hugging Face config.json files (the Instruct variants, whose
// rms_norm_eps is 1e-6 and max_position_embeddings 32768 for Qwen2.5; Qwen3 trains with 40960;
// Llama 3.1 with 131072). Cross-checked against the parameter counts on the model cards:
// Qwen2.5-0.5B 494,032,768; Qwen2.5-1.5B 1,543,714,304; Qwen2.5-7B 7,615,616,512; Qwen2.5-14B
// 14,770,033,664; Qwen2.5-32B 32,763,876,352; Llama-3.1-8B 8,030,261,248; Qwen3-8B 8,190,735,360;
// Qwen3-32B 32,762,123,264 (tests/synth_test.cpp checks n_params() against these).
ModelShape qwen25(const char* name, const char* display, const char* size, int layers, int64_t embd,
                  int64_t ff, int heads, int kv, int64_t vocab, bool tied) {
  ModelShape s;
  s.name = name;
  s.display_name = display;
  s.size_label = size;
  s.arch = Arch::Qwen2;
  s.n_layer = layers;
  s.n_embd = embd;
  s.n_ff = ff;
  s.n_head = heads;
  s.n_head_kv = kv;
  s.head_dim = static_cast<int>(embd / heads);
  s.n_vocab = vocab;
  s.tied = tied;
  s.n_ctx_train = 32768;
  s.rope_base = 1000000.0f;
  s.rms_eps = 1e-6f;
  s.vocab = VocabStyle::Qwen;
  return s;
}

ModelShape qwen3(const char* name, const char* display, const char* size, int layers, int64_t embd,
                 int64_t ff, int heads, int kv) {
  ModelShape s = qwen25(name, display, size, layers, embd, ff, heads, kv, 151936, false);
  s.arch = Arch::Qwen3;
  s.head_dim = 128;  // head_dim in config.json; not n_embd / n_head
  s.n_ctx_train = 40960;
  return s;
}

ModelShape llama31_8b() {
  ModelShape s;
  s.name = "llama-3.1-8b";
  s.display_name = "Meta Llama 3.1 8B Instruct";
  s.size_label = "8B";
  s.arch = Arch::Llama;
  s.n_layer = 32;
  s.n_embd = 4096;
  s.n_ff = 14336;
  s.n_head = 32;
  s.n_head_kv = 8;
  s.head_dim = 128;
  s.n_vocab = 128256;
  s.tied = false;
  s.n_ctx_train = 131072;
  s.rope_base = 500000.0f;
  s.rms_eps = 1e-5f;
  s.llama3_rope_freqs = true;
  s.vocab = VocabStyle::Llama3;
  return s;
}

// Qwen3.5 (config.json "text_config" of Qwen/Qwen3.5-4B and -27B): head_dim 256,
// partial_rotary_factor 0.25 (64 rotated dimensions), rope_theta 1e7, rms_norm_eps 1e-6,
// full_attention_interval 4, linear_conv_kernel_dim 4, linear key/value head dim 128, 16 linear key
// heads, max_position_embeddings 262144, vocabulary 248320. The 27B has 64 layers of width 5120,
// intermediate_size 17408, 24 / 4 attention heads and 48 linear value heads, untied embeddings
// (llama.cpp's tests/snapshots/qwen3.6-27b.schema lists output.weight); the 4B 32 layers of width
// 2560, intermediate_size 9216, 16 / 4 attention heads, 32 linear value heads and tied embeddings.
// Both ship one MTP layer, which GGUF conversions may or may not keep: the presets leave it out
// (as the llama.cpp schema does; straw skips it when present).
ModelShape qwen35(const char* name, const char* display, const char* size, int layers, int64_t embd,
                  int64_t ff, int heads, int kv, int v_heads, bool tied) {
  ModelShape s = qwen25(name, display, size, layers, embd, ff, heads, kv, 248320, tied);
  s.arch = Arch::Qwen35;
  s.head_dim = 256;
  s.n_ctx_train = 262144;
  s.rope_base = 10000000.0f;
  s.vocab = VocabStyle::Qwen35;
  s.full_attention_interval = 4;
  s.n_rot = 64;
  s.ssm_conv_kernel = 4;
  s.ssm_head_dim = 128;
  s.ssm_k_heads = 16;
  s.ssm_v_heads = v_heads;
  return s;
}

// Qwen3-30B-A3B (config.json of Qwen/Qwen3-30B-A3B): 48 layers of width 2048, 32 / 4 attention
// heads of 128, 128 experts of moe_intermediate_size 768 with 8 per token (norm_topk_prob true),
// no shared expert, intermediate_size 6144 (unused), vocabulary 151936, untied, rope_theta 1e6,
// rms_norm_eps 1e-6, max_position_embeddings 40960. Model card: 30,532,122,624 parameters.
ModelShape qwen3_30b_a3b() {
  ModelShape s = qwen3("qwen3-30b-a3b", "Qwen3 30B A3B", "30B-A3B", 48, 2048, 6144, 32, 4);
  s.arch = Arch::Qwen3Moe;
  s.n_expert = 128;
  s.n_expert_used = 8;
  s.n_ff_exp = 768;
  return s;
}

// Qwen3.5-35B-A3B (text_config of Qwen/Qwen3.5-35B-A3B, as THUDM/slime's
// scripts/models/qwen3.5-35B-A3B.sh restates it): qwen35 layers of width 2048, 40 of them, 16 / 2
// attention heads of 256, 16 / 32 linear key / value heads of 128, 256 experts of 512 rows with 8
// per token and a shared expert of 512 rows, untied embeddings. The card's 35B counts the vision
// encoder and the MTP layer too; the text model's tensors hold 34,660,610,688.
ModelShape qwen35_35b_a3b() {
  ModelShape s =
      qwen35("qwen3.5-35b-a3b", "Qwen3.5 35B A3B", "35B-A3B", 40, 2048, 512, 16, 2, 32, false);
  s.arch = Arch::Qwen35Moe;
  s.n_expert = 256;
  s.n_expert_used = 8;
  s.n_ff_exp = 512;
  s.n_ff_shexp = 512;
  return s;
}

std::vector<ModelShape> make_presets() {
  return {
      qwen25("qwen2.5-0.5b", "Qwen2.5 0.5B Instruct", "0.5B", 24, 896, 4864, 14, 2, 151936, true),
      qwen25("qwen2.5-1.5b", "Qwen2.5 1.5B Instruct", "1.5B", 28, 1536, 8960, 12, 2, 151936, true),
      qwen25("qwen2.5-7b", "Qwen2.5 7B Instruct", "7B", 28, 3584, 18944, 28, 4, 152064, false),
      qwen25("qwen2.5-14b", "Qwen2.5 14B Instruct", "14B", 48, 5120, 13824, 40, 8, 152064, false),
      qwen25("qwen2.5-32b", "Qwen2.5 32B Instruct", "32B", 64, 5120, 27648, 40, 8, 152064, false),
      llama31_8b(),
      qwen3("qwen3-8b", "Qwen3 8B", "8B", 36, 4096, 12288, 32, 8),
      qwen3("qwen3-32b", "Qwen3 32B", "32B", 64, 5120, 25600, 64, 8),
      qwen35("qwen3.5-4b", "Qwen3.5 4B", "4B", 32, 2560, 9216, 16, 4, 32, true),
      qwen35("qwen3.5-27b", "Qwen3.5 27B", "27B", 64, 5120, 17408, 24, 4, 48, false),
      qwen3_30b_a3b(),
      qwen35_35b_a3b(),
  };
}

// "494M", "1.5B", "33B": the parameter count with two significant digits, as a size label.
std::string size_label_of(int64_t params) {
  char buf[32];
  const double p = static_cast<double>(params);
  if (p >= 1e9) {
    const double b = p / 1e9;
    std::snprintf(buf, sizeof buf, b >= 10 ? "%.0fB" : "%.1fB", b);
  } else {
    const double m = p / 1e6;
    std::snprintf(buf, sizeof buf, m >= 10 ? "%.0fM" : "%.1fM", m);
  }
  return buf;
}

}  // namespace

int64_t ModelShape::n_params() const {
  const int64_t gate = qwen35_layers() ? 2 : 1;  // qwen35: attn_q also gives the output gate
  const int64_t attn = gate * n_embd * n_q() + 2 * n_embd * n_kv() + n_q() * n_embd;
  const int64_t bias = arch == Arch::Qwen2 ? n_q() + 2 * n_kv() : 0;
  const bool qk_norms = arch == Arch::Qwen3 || arch == Arch::Qwen3Moe || qwen35_layers();
  const int64_t qk_norm = qk_norms ? 2 * int64_t(head_dim) : 0;
  // The FFN and both norms; an MoE FFN is the router and the experts' gate, up and down.
  const int64_t ffn =
      (n_expert > 0 ? n_embd * n_expert + 3 * n_embd * n_ff_exp * n_expert : 3 * n_embd * n_ff) +
      2 * n_embd + (n_ff_shexp > 0 ? 3 * n_embd * n_ff_shexp + n_embd : 0);
  // A Gated DeltaNet layer: qkv, z, beta, alpha and out projections, conv taps, dt bias, A, norm.
  const int64_t linear = n_embd * ssm_conv_dim() + n_embd * ssm_inner() + 2 * n_embd * ssm_v_heads +
                         ssm_inner() * n_embd + int64_t(ssm_conv_kernel) * ssm_conv_dim() +
                         2 * ssm_v_heads + ssm_head_dim;
  int64_t layers = 0;
  for (int i = 0; i < n_layer; ++i)
    layers += (is_recurrent(i) ? linear : attn + bias + qk_norm) + ffn;
  return layers + n_embd + (tied ? 1 : 2) * n_vocab * n_embd;
}

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::Llama:
      return "llama";
    case Arch::Qwen2:
      return "qwen2";
    case Arch::Qwen3:
      return "qwen3";
    case Arch::Qwen35:
      return "qwen35";
    case Arch::Qwen3Moe:
      return "qwen3moe";
    case Arch::Qwen35Moe:
      return "qwen35moe";
  }
  return "unknown";
}

std::optional<Arch> arch_from_name(std::string_view name) {
  if (name == "llama") return Arch::Llama;
  if (name == "qwen2") return Arch::Qwen2;
  if (name == "qwen3") return Arch::Qwen3;
  if (name == "qwen35") return Arch::Qwen35;
  if (name == "qwen3moe") return Arch::Qwen3Moe;
  if (name == "qwen35moe") return Arch::Qwen35Moe;
  return std::nullopt;
}

const std::vector<ModelShape>& presets() {
  static const std::vector<ModelShape> kPresets = make_presets();
  return kPresets;
}

const ModelShape* find_preset(std::string_view name) {
  for (const ModelShape& s : presets())
    if (s.name == name) return &s;
  return nullptr;
}

std::string preset_names() {
  std::string out;
  for (const ModelShape& s : presets()) out += (out.empty() ? "" : ", ") + s.name;
  return out;
}

ModelShape custom_shape(Arch arch, int n_layer, int64_t n_embd, int64_t n_ff, int n_head,
                        int n_head_kv, int head_dim, int64_t n_vocab, bool tied) {
  ModelShape s;
  s.name = "custom";
  s.arch = arch;
  s.n_layer = n_layer;
  s.n_embd = n_embd;
  s.n_ff = n_ff;
  s.n_head = n_head;
  s.n_head_kv = n_head_kv;
  s.head_dim = head_dim > 0 ? head_dim : (n_head > 0 ? static_cast<int>(n_embd / n_head) : 0);
  s.n_vocab = n_vocab > 0 ? n_vocab : 32000;
  s.tied = tied;
  const bool llama = arch == Arch::Llama;
  s.n_ctx_train = llama ? 8192 : 32768;
  s.rope_base = llama ? 500000.0f : 1000000.0f;
  s.rms_eps = llama ? 1e-5f : 1e-6f;
  s.vocab = llama ? VocabStyle::Llama3 : VocabStyle::Qwen;
  if (arch == Arch::Qwen35 || arch == Arch::Qwen35Moe) {
    // Qwen3.5's proportions: a quarter of the head rotated, full attention every 4th layer,
    // linear heads of half the attention head size, as many key heads as attention heads and
    // twice as many value heads (Qwen3.5-4B: 256 / 64 / 128, 16 / 16 / 32).
    s.vocab = VocabStyle::Qwen35;
    s.full_attention_interval = 4;
    s.n_rot = std::max(6, s.head_dim / 4 / 2 * 2);
    s.ssm_conv_kernel = 4;
    s.ssm_head_dim = std::max(2, s.head_dim / 2);
    s.ssm_k_heads = n_head;
    s.ssm_v_heads = 2 * n_head;
    s.rope_base = 10000000.0f;
  }
  s.size_label = size_label_of(s.n_params());
  s.display_name = str(arch_name(arch), " ", s.size_label, " (custom shape)");
  return s;
}

ModelShape with_experts(ModelShape s, int n_expert, int n_expert_used, int64_t n_ff_exp,
                        int64_t n_ff_shexp) {
  s.n_expert = n_expert;
  s.n_expert_used = n_expert_used;
  s.n_ff_exp = n_ff_exp;
  s.n_ff_shexp = n_ff_shexp;
  s.size_label = size_label_of(s.n_params());
  s.display_name = str(arch_name(s.arch), " ", s.size_label, " (custom shape)");
  return s;
}

ModelShape first_layers(const ModelShape& s, int n_layer) {
  if (n_layer < 1 || n_layer > s.n_layer)
    fail("model shape '", s.name, "' has ", s.n_layer, " layers: keep 1 to ", s.n_layer, ", not ",
         n_layer);
  if (n_layer == s.n_layer) return s;
  ModelShape out = s;
  out.quant_n_layer = s.quant_n_layer > 0 ? s.quant_n_layer : s.n_layer;
  out.n_layer = n_layer;
  out.n_mtp = 0;  // the MTP blocks follow the last layer
  out.display_name = str(s.display_name.empty() ? s.name : s.display_name, " (first ", n_layer,
                         " of ", out.quant_n_layer, " layers)");
  return out;
}

void check_shape(const ModelShape& s) {
  if (s.n_layer <= 0 || s.n_embd <= 0 || s.n_ff <= 0 || s.n_head <= 0 || s.n_head_kv <= 0)
    fail("model shape '", s.name, "': layers, embd, ff, heads and kv-heads must all be positive");
  if (s.n_head % s.n_head_kv != 0)
    fail("model shape '", s.name, "': heads (", s.n_head, ") must be a multiple of kv-heads (",
         s.n_head_kv, ")");
  if (s.head_dim <= 0 || s.head_dim % 2 != 0)
    fail("model shape '", s.name, "': the head size ", s.head_dim,
         " must be positive and even (RoPE rotates pairs); give --head-dim");
  if (s.n_layer > 4096 || s.n_head > 4096)
    fail("model shape '", s.name, "': at most 4096 layers and 4096 heads");
  if (s.n_vocab < 300)
    fail("model shape '", s.name, "': the vocabulary must have at least 300 tokens (256 bytes, ",
         "special tokens and merges), got ", s.n_vocab);
  if (s.n_vocab > (int64_t(1) << 31) - 1) fail("model shape '", s.name, "': vocabulary too large");
  if ((s.arch == Arch::Qwen3Moe || s.arch == Arch::Qwen35Moe) &&
      (s.n_expert < 2 || s.n_expert_used < 1 || s.n_expert_used > s.n_expert || s.n_ff_exp < 1))
    fail("model shape '", s.name, "': a mixture of experts needs at least 2 experts, 1 to ",
         "n_expert used per token and a positive expert FFN width (got ", s.n_expert, ", ",
         s.n_expert_used, ", ", s.n_ff_exp, ")");
  if (s.qwen35_layers()) {
    if (s.full_attention_interval < 1 || s.ssm_conv_kernel < 1 || s.ssm_head_dim < 1 ||
        s.ssm_k_heads < 1 || s.ssm_v_heads % s.ssm_k_heads != 0 || s.n_mtp < 0)
      fail("model shape '", s.name, "': invalid linear-attention sizes (interval ",
           s.full_attention_interval, ", conv ", s.ssm_conv_kernel, ", head ", s.ssm_head_dim,
           ", key heads ", s.ssm_k_heads, ", value heads ", s.ssm_v_heads, ")");
    if (s.n_rot < 6 || s.n_rot % 2 != 0 || s.n_rot > s.head_dim)
      fail("model shape '", s.name, "': the rotated dimensions ", s.n_rot,
           " must be even, at least 6 (three rope sections) and at most the head size ",
           s.head_dim);
  }
}

}  // namespace straw::model
