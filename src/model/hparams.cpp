#include "model/hparams.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "gguf/gguf.h"
#include "model/recurrent_state.h"
#include "util/str.h"

namespace straw::model {

const char* supported_architectures() {
  return "llama, qwen2, qwen3, qwen35, qwen3moe, qwen35moe";
}

bool HParams::has_recurrent() const {
  for (uint8_t r : recurrent)
    if (r) return true;
  return false;
}

namespace {

// qwen35's IMRoPE (interleaved multi-section RoPE): frequency pair i takes the position of stream
// t, h or w in turn (i % 3), within each stream's section count, and else the fourth stream. For
// text the t, h and w positions all equal the token position and the fourth is 0, so the rotation
// is NEOX RoPE on the first n_rot dimensions as long as no pair falls to the fourth stream.
void check_imrope_sections(const gguf::Reader& r, const std::string& key, int n_rot) {
  const std::vector<int32_t> sec = r.get_i32_array(key);
  if (sec.size() != 4 || sec[0] < 0 || sec[1] < 0 || sec[2] < 0 || sec[3] < 0)
    fail(r.path(), ": ", key, " must hold 4 non-negative section sizes");
  const int total = sec[0] + sec[1] + sec[2] + sec[3];
  if (total <= 0 || total > n_rot / 2)
    fail(r.path(), ": ", key, " [", sec[0], ", ", sec[1], ", ", sec[2], ", ", sec[3],
         "] does not fit rope.dimension_count ", n_rot);
  for (int i = 0; i < n_rot / 2; ++i) {
    const int s = i % total;
    const bool text_position = (s % 3 == 0 && s < 3 * sec[0]) || (s % 3 == 1 && s < 3 * sec[1]) ||
                               (s % 3 == 2 && s < 3 * sec[2]);
    if (!text_position)
      fail(r.path(), ": ", key, " [", sec[0], ", ", sec[1], ", ", sec[2], ", ", sec[3],
           "] rotates frequency pair ", i,
           " by the fourth position stream, which text input does not use: not supported");
  }
}

// qwen35: which layers are linear attention, and the Gated DeltaNet sizes.
// YaRN (rope.scaling.type "yarn"), as llama.cpp applies it: frequencies interpolated by
// 1/factor except the fast pairs, which a ramp over the correction range [yarn_low, yarn_high]
// hands back to extrapolation; q and k scaled by 1 + 0.1 ln(factor) (times attn_factor).
// The correction range: pair i turns n_ctx_orig * f_i / (2 pi) times over the original context;
// the pairs that turn more than beta_fast times keep their frequency, those that turn less than
// beta_slow times are interpolated. Solving base^(-2i/n_rot) * n_ctx_orig / (2 pi) = beta for i:
//   i(beta) = n_rot * ln(n_ctx_orig / (2 pi beta)) / (2 ln base),
// yarn_low = max(0, floor(i(beta_fast))), yarn_high = min(n_rot - 1, ceil(i(beta_slow))).
void read_yarn(const gguf::Reader& r, HParams& hp, float factor) {
  const std::string a = hp.arch_name + ".";
  const auto key = [&](const char* k) { return a + k; };
  if (factor <= 0.0f)
    fail(r.path(),
         ": rope.scaling.type is yarn but rope.scaling.factor is missing or not positive");
  const int64_t n_ctx_orig =
      r.find_u32(key("rope.scaling.original_context_length")).value_or(uint32_t(hp.n_ctx_train));
  if (n_ctx_orig <= 0)
    fail(r.path(), ": rope.scaling.original_context_length must be positive for yarn scaling");
  // llama.cpp's defaults (its loader reads no beta keys for these architectures); a file that
  // states them is taken at its word.
  const float beta_fast = r.find_f32(key("rope.scaling.yarn_beta_fast")).value_or(32.0f);
  const float beta_slow = r.find_f32(key("rope.scaling.yarn_beta_slow")).value_or(1.0f);
  ops::RopeParams& p = hp.rope;
  p.freq_scale = 1.0f / factor;
  p.ext_factor = 1.0f;
  const auto pair_of = [&](float beta) {
    return float(p.n_rot) *
           std::log(float(n_ctx_orig) / (beta * 2.0f * std::numbers::pi_v<float>)) /
           (2.0f * std::log(p.base));
  };
  p.yarn_low = std::max(0.0f, std::floor(pair_of(beta_fast)));
  p.yarn_high = std::min(float(p.n_rot - 1), std::ceil(pair_of(beta_slow)));
  if (factor > 1.0f) p.mscale *= 1.0f + 0.1f * std::log(factor);
  hp.n_ctx_yarn = static_cast<int64_t>(double(n_ctx_orig) * double(factor));
}

void read_qwen35(const gguf::Reader& r, HParams& hp, int n_layer_all) {
  const std::string& a = hp.arch_name;
  auto key = [&](const char* k) { return a + "." + k; };
  hp.attn_output_gate = true;
  if (hp.head_dim != hp.head_dim_v)
    fail(r.path(), ": the gated attention needs attention.key_length (", hp.head_dim,
         ") equal to attention.value_length (", hp.head_dim_v, ")");
  hp.ssm_conv_kernel = static_cast<int>(r.get_u32(key("ssm.conv_kernel")));
  hp.ssm_inner = r.get_u32(key("ssm.inner_size"));
  hp.ssm_head_dim = static_cast<int>(r.get_u32(key("ssm.state_size")));
  hp.ssm_v_heads = static_cast<int>(r.get_u32(key("ssm.time_step_rank")));
  hp.ssm_k_heads = static_cast<int>(r.get_u32(key("ssm.group_count")));
  if (hp.ssm_conv_kernel < 1 || hp.ssm_head_dim <= 0 || hp.ssm_k_heads <= 0 ||
      hp.ssm_v_heads <= 0 || hp.ssm_v_heads % hp.ssm_k_heads != 0)
    fail(r.path(), ": invalid linear-attention sizes: ssm.conv_kernel ", hp.ssm_conv_kernel,
         ", ssm.state_size ", hp.ssm_head_dim, ", ssm.group_count ", hp.ssm_k_heads,
         ", ssm.time_step_rank ", hp.ssm_v_heads, " (value heads must be a multiple of key heads)");
  if (hp.ssm_inner != int64_t(hp.ssm_v_heads) * hp.ssm_head_dim)
    fail(r.path(), ": ssm.inner_size ", hp.ssm_inner, " is not ssm.time_step_rank ", hp.ssm_v_heads,
         " x ssm.state_size ", hp.ssm_head_dim, " (value heads must have the size of key heads)");
  hp.recurrent.assign(size_t(hp.n_layer), 0);
  const std::string layers_key = key("attention.recurrent_layers");
  if (const gguf::Value* v = r.find(layers_key)) {
    if (!v->is_array() || v->size() < size_t(hp.n_layer))
      fail(r.path(), ": ", layers_key, " must be an array with an entry per layer (", n_layer_all,
           ")");
    const bool bools = v->elem_type() == gguf::ValueType::BOOL;
    const std::vector<int32_t> ints = bools ? std::vector<int32_t>{} : r.get_i32_array(layers_key);
    for (int i = 0; i < hp.n_layer; ++i)
      hp.recurrent[size_t(i)] = bools ? v->bool_at(size_t(i)) : ints[size_t(i)] != 0;
  } else {
    const uint32_t interval = r.find_u32(key("full_attention_interval")).value_or(4);
    if (interval == 0) fail(r.path(), ": ", key("full_attention_interval"), " must be positive");
    for (int i = 0; i < hp.n_layer; ++i) hp.recurrent[size_t(i)] = (i + 1) % interval != 0;
  }
  check_imrope_sections(r, key("rope.dimension_sections"), hp.rope.n_rot);
}

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
  hp.n_ff_shexp = r.find_u32(key("expert_shared_feed_forward_length")).value_or(0);
  hp.expert_weights_scale = r.find_f32(key("expert_weights_scale")).value_or(0.0f);
}

}  // namespace

HParams read_hparams(const gguf::Reader& r) {
  HParams hp;
  hp.arch_name = r.get_string("general.architecture");
  const std::string& a = hp.arch_name;
  if (a == "llama")
    hp.arch = Arch::Llama;
  else if (a == "qwen2")
    hp.arch = Arch::Qwen2;
  else if (a == "qwen3")
    hp.arch = Arch::Qwen3;
  else if (a == "qwen35")
    hp.arch = Arch::Qwen35;
  else if (a == "qwen3moe")
    hp.arch = Arch::Qwen3Moe;
  else if (a == "qwen35moe")
    hp.arch = Arch::Qwen35Moe;
  else
    fail(r.path(), ": architecture '", a,
         "' is not supported (supported: ", supported_architectures(), ")");

  auto key = [&](const char* k) { return a + "." + k; };
  hp.n_ctx_train = r.get_u32(key("context_length"));
  hp.n_embd = r.get_u32(key("embedding_length"));
  hp.n_layer = static_cast<int>(r.get_u32(key("block_count")));
  const int n_layer_all = hp.n_layer;
  if (auto nextn = r.find_u32(key("nextn_predict_layers"))) {
    hp.n_mtp = static_cast<int>(*nextn);
    hp.n_layer -= hp.n_mtp;
  }
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
  std::string scaling =
      r.find_string(key("rope.scaling.type")).value_or("linear");  // llama.cpp's default
  float factor = r.find_f32(key("rope.scaling.factor")).value_or(0.0f);
  if (auto legacy = r.find_f32(key("rope.scale_linear"))) factor = *legacy;
  // rope.scaling.attn_factor multiplies the rotated q and k (1 unless set), with any scaling type.
  const float attn_factor = r.find_f32(key("rope.scaling.attn_factor")).value_or(1.0f);
  hp.rope.mscale = attn_factor;
  if (scaling == "none" || scaling == "linear") {
    hp.rope.freq_scale = (scaling == "linear" && factor > 0.0f) ? 1.0f / factor : 1.0f;
  } else if (scaling == "yarn") {
    read_yarn(r, hp, factor);
  } else {
    fail(r.path(), ": rope scaling type '", scaling,
         "' is not supported yet (supported: none, linear, yarn); LongRoPE models cannot run");
  }
  if (hp.arch == Arch::Qwen35 || hp.arch == Arch::Qwen35Moe) read_qwen35(r, hp, n_layer_all);
  if (hp.arch == Arch::Qwen3Moe || hp.arch == Arch::Qwen35Moe) read_moe(r, hp);
  return hp;
}

sched::ModelShape plan_shape(const HParams& hp, int64_t n_vocab) {
  sched::ModelShape s;
  s.n_layer = hp.n_layer;
  s.n_embd = hp.n_embd;
  s.n_ff = hp.n_ff;
  s.n_head = hp.n_head;
  s.n_head_kv = hp.n_head_kv;
  s.head_dim = hp.head_dim;
  s.head_dim_v = hp.head_dim_v;
  s.n_vocab = n_vocab;
  s.n_ctx_train = hp.n_ctx_train;
  s.attn_output_gate = hp.attn_output_gate;
  s.n_expert = hp.n_expert;
  s.n_expert_used = hp.n_expert_used;
  s.n_ff_exp = hp.n_ff_exp;
  if (hp.has_recurrent()) {
    s.recurrent = hp.recurrent;
    // The state and the snapshot a prompt's last step takes (RecurrentState).
    s.recurrent_state_bytes = 2 * hp.recurrent_layer_bytes();
    s.recurrent_checkpoints = RecurrentState::kCheckpoints;
    // Per token: the conv's multiply-adds, and per value head the delta rule's four passes over
    // its S x S state (decay, S^T k, update, S^T q).
    s.recurrent_flops_per_token =
        2.0 * double(hp.ssm_conv_kernel) * double(hp.ssm_conv_dim()) +
        8.0 * double(hp.ssm_v_heads) * double(hp.ssm_head_dim) * double(hp.ssm_head_dim);
    s.ssm_conv_dim = hp.ssm_conv_dim();
    s.ssm_inner = hp.ssm_inner;
    s.ssm_v_heads = hp.ssm_v_heads;
  }
  return s;
}

}  // namespace straw::model
