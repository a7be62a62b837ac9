// Model shapes: the hyperparameters of real models (presets) and of custom shapes, as the input of
// the synthesizer (model/synth.h), which writes GGUF files with these shapes and random weights.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/hparams.h"

namespace straw::model {

// Which tokenizer conventions a synthetic model follows (special tokens, pre-tokenizer, template).
enum class VocabStyle {
  Qwen,    // pre "qwen2"; <|endoftext|> <|im_start|> <|im_end|>; ChatML; no BOS added
  Llama3,  // pre "llama-bpe"; <|begin_of_text|> ... <|eot_id|>; Llama 3 template; BOS added
  Qwen35   // Qwen3.5: pre "qwen35", Qwen's special tokens after 248044 text tokens
};

struct ModelShape {
  std::string name;          // preset name ("qwen2.5-7b") or "custom"
  std::string display_name;  // general.name: "Qwen2.5 7B Instruct"
  std::string size_label;    // general.size_label: "7B"
  Arch arch = Arch::Qwen2;
  int n_layer = 0;
  int64_t n_embd = 0;
  int64_t n_ff = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;  // attention.key_length = value_length
  int64_t n_vocab = 0;
  bool tied = false;  // no output.weight: the LM head is token_embd
  int64_t n_ctx_train = 0;
  float rope_base = 0;
  float rms_eps = 0;
  // Llama 3.1's "llama3" RoPE scaling, stored as rope_freqs.weight (the converter bakes it in):
  // factor 8, low/high frequency factors 1 and 4, original context 8192.
  bool llama3_rope_freqs = false;
  // RoPE scaling metadata ({arch}.rope.scaling.type / .factor / .original_context_length), written
  // when rope_scaling is set: "linear" or "yarn" (llama.cpp's names).
  std::string rope_scaling;
  float rope_scaling_factor = 0;
  int64_t rope_scaling_orig_ctx = 0;  // 0: not written
  VocabStyle vocab = VocabStyle::Qwen;

  // qwen35 (Qwen3.5): every full_attention_interval-th layer is gated attention (attn_q gives q
  // and an output gate per head; partial rotary over n_rot dimensions), the others Gated DeltaNet
  // linear attention (config.json: linear_conv_kernel_dim, linear_key_head_dim =
  // linear_value_head_dim, linear_num_key_heads, linear_num_value_heads).
  int full_attention_interval = 0;  // 0: every layer is full attention
  int n_rot = 0;                    // rope.dimension_count; 0: head_dim
  int ssm_conv_kernel = 0;
  int ssm_head_dim = 0;
  int ssm_k_heads = 0;
  int ssm_v_heads = 0;
  int n_mtp = 0;  // MTP / NextN blocks stored after the n_layer blocks (not run by straw)

  // Mixture of experts (qwen3moe, qwen35moe; 0 for dense shapes): every layer's FFN is a router
  // over n_expert SwiGLU experts of n_ff_exp rows, n_expert_used of them per token (config.json:
  // num_experts, num_experts_per_tok, moe_intermediate_size). n_ff stays the GGUF
  // feed_forward_length (the config's intermediate_size; qwen35moe: the expert width), which no
  // tensor of such a model uses.
  int n_expert = 0;
  int n_expert_used = 0;
  int64_t n_ff_exp = 0;
  int64_t n_ff_shexp = 0;  // qwen35moe: the shared expert's width (shared_expert_intermediate_size)

  // The layers of the model llama-quantize typed (synth --layers N keeps the first N blocks of a
  // preset: its types stay those of the full model's first N blocks); 0: n_layer.
  int quant_n_layer = 0;

  bool qwen35_layers() const { return arch == Arch::Qwen35 || arch == Arch::Qwen35Moe; }
  bool is_recurrent(int il) const {
    return full_attention_interval > 0 && il < n_layer && (il + 1) % full_attention_interval != 0;
  }
  int64_t ssm_inner() const { return int64_t(ssm_v_heads) * ssm_head_dim; }
  int64_t ssm_conv_dim() const { return 2 * int64_t(ssm_k_heads) * ssm_head_dim + ssm_inner(); }

  int64_t n_q() const { return int64_t(n_head) * head_dim; }      // rows of attn_q
  int64_t n_kv() const { return int64_t(n_head_kv) * head_dim; }  // rows of attn_k / attn_v
  // Parameters as the model card counts them (every tensor element; rope_freqs excluded).
  int64_t n_params() const;
};

// "llama", "qwen2", "qwen3", "qwen35", "qwen3moe".
const char* arch_name(Arch a);
std::optional<Arch> arch_from_name(std::string_view name);

// The presets, in a fixed order: qwen2.5-{0.5b,1.5b,7b,14b,32b}, llama-3.1-8b, qwen3-{8b,32b},
// qwen3.5-{4b,27b}, qwen3-30b-a3b, qwen3.5-35b-a3b.
const std::vector<ModelShape>& presets();
const ModelShape* find_preset(std::string_view name);
std::string preset_names();  // "qwen2.5-0.5b, qwen2.5-1.5b, ..." for messages

// A custom shape with the architecture's usual defaults: head_dim n_embd/n_head, vocabulary 32000
// (when n_vocab is 0), context 32768 (llama: 8192), rope base 1e6 (llama: 5e5), rms eps 1e-6
// (llama: 1e-5). Validate it with check_shape().
ModelShape custom_shape(Arch arch, int n_layer, int64_t n_embd, int64_t n_ff, int n_head,
                        int n_head_kv, int head_dim, int64_t n_vocab, bool tied);

// A custom shape's mixture of experts (qwen3moe / qwen35moe): n_expert experts of n_ff_exp rows,
// n_expert_used per token, a shared expert of n_ff_shexp rows (qwen35moe; 0: none). The size label
// follows the new parameter count.
ModelShape with_experts(ModelShape s, int n_expert, int n_expert_used, int64_t n_ff_exp,
                        int64_t n_ff_shexp);

// The first n_layer blocks of `s` (1 <= n_layer <= s.n_layer; else straw::Error), typed as in the
// full model: a file of a real model's width that fits a small machine's RAM.
ModelShape first_layers(const ModelShape& s, int n_layer);

// Throws straw::Error when the shape cannot form a model: non-positive sizes, n_head not a
// multiple of n_head_kv, an odd head size, a vocabulary too small for the synthetic tokenizer.
void check_shape(const ModelShape& s);

}  // namespace straw::model
