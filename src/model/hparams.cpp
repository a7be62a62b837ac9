#include "model/hparams.h"

#include <cmath>

#include "gguf/gguf.h"
#include "util/str.h"

namespace straw::model {

const char* supported_architectures() { return "llama, qwen2, qwen3, qwen3moe"; }

namespace {

// The routed experts of qwen3moe, as llama.cpp reads them (llama_model_qwen3moe): Qwen3-MoE's
// router renormalises its top-k weights (norm_topk_prob), which llama.cpp hard-codes; a file that
// says expert_weights_norm = false is honoured.
void read_moe(const gguf::Reader& r, HParams& hp) {
  auto key = [&](const char* k) { return hp.arch_name + "." + k; };
  hp.n_expert = static_cast<int>(r.get_u32(key("expert_count")));
  hp.n_expert_used = static_cast<int>(r.get_u32(key("expert_used_count")));
  if (hp.n_expert <= 1 || hp.n_expert_used <= 0 || hp.n_expert_used > hp.n_expert)
    fail(r.path(), ": expert_count (", hp.n_expert, ") and expert_used_count (", hp.n_expert_used,
         ") must satisfy 0 < used <= count and count > 1 for a mixture-of-experts model");
  hp.n_ff_exp = r.find_u32(key("expert_feed_forward_length"))
                    .value_or(uint32_t(hp.n_ff / hp.n_expert_used));
  if (hp.n_ff_exp <= 0) fail(r.path(), ": expert_feed_forward_length must be positive");
  if (auto norm = r.find_bool(key("expert_weights_norm"))) hp.expert_weights_norm = *norm;
  hp.expert_weights_scale = r.find_f32(key("expert_weights_scale")).value_or(0.0f);
}

}  // namespace

HParams read_hparams(const gguf::Reader& r) {
  HParams hp;
  hp.arch_name = r.get_string("general.architecture");
  const std::string& a = hp.arch_name;
  if (a == "llama") hp.arch = Arch::Llama;
  else if (a == "qwen2") hp.arch = Arch::Qwen2;
  else if (a == "qwen3") hp.arch = Arch::Qwen3;
  else if (a == "qwen3moe") hp.arch = Arch::Qwen3Moe;
  else
    fail(r.path(), ": architecture '", a, "' is not supported (supported: ",
         supported_architectures(), ")");

  auto key = [&](const char* k) { return a + "." + k; };
  hp.n_ctx_train = r.get_u32(key("context_length"));
  hp.n_embd = r.get_u32(key("embedding_length"));
  hp.n_layer = static_cast<int>(r.get_u32(key("block_count")));
  if (auto nextn = r.find_u32(key("nextn_predict_layers"))) hp.n_layer -= static_cast<int>(*nextn);
  hp.n_ff = r.get_u32(key("feed_forward_length"));
  hp.n_head = static_cast<int>(r.get_u32(key("attention.head_count")));
  hp.n_head_kv = static_cast<int>(r.find_u32(key("attention.head_count_kv")).value_or(hp.n_head));
  if (hp.n_head <= 0 || hp.n_embd <= 0 || hp.n_layer <= 0)
    fail(r.path(), ": head_count, embedding_length and block_count must be positive");
  hp.head_dim = static_cast<int>(
      r.find_u32(key("attention.key_length")).value_or(uint32_t(hp.n_embd / hp.n_head)));
  hp.head_dim_v =
      static_cast<int>(r.find_u32(key("attention.value_length")).value_or(uint32_t(hp.head_dim)));
  hp.rms_eps = r.get_f32(key("attention.layer_norm_rms_epsilon"));
  if (hp.n_head_kv <= 0 || hp.n_head % hp.n_head_kv != 0)
    fail(r.path(), ": attention.head_count (", hp.n_head,
         ") must be a positive multiple of attention.head_count_kv (", hp.n_head_kv, ")");
  if (hp.head_dim <= 0 || hp.head_dim_v <= 0 || hp.head_dim % 2 != 0)
    fail(r.path(), ": invalid head size ", hp.head_dim, " (attention.key_length)");
  hp.attn_scale = r.find_f32(key("attention.scale")).value_or(0.0f);
  if (hp.attn_scale == 0.0f) hp.attn_scale = 1.0f / std::sqrt(float(hp.head_dim));

  hp.rope.mode = hp.arch == Arch::Llama ? ops::RopeMode::Norm : ops::RopeMode::Neox;
  hp.rope.n_rot = static_cast<int>(r.find_u32(key("rope.dimension_count")).value_or(hp.head_dim));
  if (hp.rope.n_rot <= 0 || hp.rope.n_rot > hp.head_dim || hp.rope.n_rot % 2 != 0)
    fail(r.path(), ": rope.dimension_count ", hp.rope.n_rot, " does not fit the head size ",
         hp.head_dim);
  hp.rope.base = r.find_f32(key("rope.freq_base")).value_or(10000.0f);
  std::string scaling = r.find_string(key("rope.scaling.type")).value_or("linear");  // llama.cpp's default
  float factor = r.find_f32(key("rope.scaling.factor")).value_or(0.0f);
  if (auto legacy = r.find_f32(key("rope.scale_linear"))) factor = *legacy;
  if (scaling == "none" || scaling == "linear") {
    hp.rope.freq_scale = (scaling == "linear" && factor > 0.0f) ? 1.0f / factor : 1.0f;
  } else {
    fail(r.path(), ": rope scaling type '", scaling,
         "' is not supported yet (supported: none, linear); YaRN and LongRoPE models cannot run");
  }
  if (hp.arch == Arch::Qwen3Moe) read_moe(r, hp);
  return hp;
}

}  // namespace straw::model
