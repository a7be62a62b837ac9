// The synthesizer: tensor plan, type mix, metadata, and the streaming, multi-threaded writer.
#include "model/synth.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <numbers>
#include <thread>

#include "gguf/gguf.h"
#include "model/synth_rng.h"
#include "util/str.h"

namespace straw::model {

namespace {

using quant::Type;

struct FileTypeInfo {
  FileType ft;
  const char* name;
  Type default_type;
};

constexpr FileTypeInfo kFileTypes[] = {
    {FileType::IQ4_XS, "IQ4_XS", Type::IQ4_XS}, {FileType::Q4_K_S, "Q4_K_S", Type::Q4_K},
    {FileType::Q4_K_M, "Q4_K_M", Type::Q4_K},   {FileType::Q5_K_M, "Q5_K_M", Type::Q5_K},
    {FileType::Q6_K, "Q6_K", Type::Q6_K},       {FileType::Q8_0, "Q8_0", Type::Q8_0},
    {FileType::F16, "F16", Type::F16},
};

const FileTypeInfo& info(FileType ft) {
  for (const FileTypeInfo& i : kFileTypes)
    if (i.ft == ft) return i;
  fail("unknown synthesizer file type id ", static_cast<uint32_t>(ft));
}

int64_t block_of(Type t) {
  return quant::type_info(t).block_size;
}

// llama-quantize's use_more_bits: the first and last eighth of the layers and every third one
// in between get more bits.
bool use_more_bits(int i, int n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

// llama.cpp's model type LLM_TYPE_70B (the only model type the quantizer looks at): 80 layers of
// Llama with grouped-query attention, or of Qwen2.
bool is_70b(const ModelShape& s) {
  if (s.n_layer != 80) return false;
  return s.arch == Arch::Qwen2 || (s.arch == Arch::Llama && s.n_head != s.n_head_kv);
}

// tensor_type_fallback: a type whose block does not divide the row length.
Type fallback(Type t, int64_t ne0) {
  if (ne0 % block_of(t) == 0) return t;
  Type f = t;
  switch (t) {
    case Type::IQ4_XS:
      f = Type::IQ4_NL;
      break;
    case Type::Q4_K:
      f = Type::Q5_0;
      break;
    case Type::Q5_K:
      f = Type::Q5_1;
      break;
    case Type::Q6_K:
      f = Type::Q8_0;
      break;
    default:
      break;  // already a 32-element block type: only F16 is left
  }
  return ne0 % block_of(f) == 0 ? f : Type::F16;
}

bool is_matrix(TensorRole r) {
  switch (r) {
    case TensorRole::TokenEmbd:
    case TensorRole::Output:
    case TensorRole::AttnQ:
    case TensorRole::AttnK:
    case TensorRole::AttnV:
    case TensorRole::AttnOutput:
    case TensorRole::FfnGate:
    case TensorRole::FfnUp:
    case TensorRole::FfnDown:
    case TensorRole::AttnQkv:
    case TensorRole::AttnGate:
    case TensorRole::SsmBeta:
    case TensorRole::SsmAlpha:
    case TensorRole::SsmOut:
    case TensorRole::NextnEhProj:
    case TensorRole::FfnGateExps:
    case TensorRole::FfnUpExps:
    case TensorRole::FfnDownExps:
    case TensorRole::FfnGateShexp:
    case TensorRole::FfnUpShexp:
    case TensorRole::FfnDownShexp:
      return true;
    default:
      return false;
  }
}

bool is_norm(TensorRole r) {
  return r == TensorRole::OutputNorm || r == TensorRole::AttnNorm || r == TensorRole::FfnNorm ||
         r == TensorRole::AttnQNorm || r == TensorRole::AttnKNorm || r == TensorRole::SsmNorm ||
         r == TensorRole::NextnNorm;
}

}  // namespace

const char* file_type_name(FileType t) {
  return info(t).name;
}

std::optional<FileType> file_type_from_name(std::string_view s) {
  for (const FileTypeInfo& i : kFileTypes) {
    const std::string_view n = i.name;
    if (n.size() == s.size() && std::equal(n.begin(), n.end(), s.begin(), [](char a, char b) {
          return std::toupper(static_cast<unsigned char>(a)) ==
                 std::toupper(static_cast<unsigned char>(b));
        }))
      return i.ft;
  }
  return std::nullopt;
}

std::string file_type_names() {
  std::string out;
  for (const FileTypeInfo& i : kFileTypes) out += (out.empty() ? "" : ", ") + std::string(i.name);
  return out;
}

int64_t TensorPlan::n_elements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

uint64_t TensorPlan::bytes() const {
  return quant::row_bytes(type, ne[0]) * static_cast<uint64_t>(n_elements() / ne[0]);
}

quant::Type quant_type_for(const ModelShape& s, FileType ft, TensorRole role, int layer,
                           int64_t ne0) {
  if (!is_matrix(role)) return Type::F32;
  const Type def = info(ft).default_type;
  // F16 is not a quantized type: llama-quantize keeps every weight at it, with no rules.
  if (def == Type::F16) return Type::F16;
  Type t = def;
  const bool q4km = ft == FileType::Q4_K_M, q5km = ft == FileType::Q5_K_M;
  const bool q4ks = ft == FileType::Q4_K_S, iq4xs = ft == FileType::IQ4_XS;
  // llama-quantize counts the MTP blocks as layers.
  const int n = (s.quant_n_layer > 0 ? s.quant_n_layer : s.n_layer) + s.n_mtp;
  const bool mixtral = s.n_expert == 8;  // llama-quantize's rules for 8-expert models
  if (role == TensorRole::Output || (s.tied && role == TensorRole::TokenEmbd)) {
    // The LM head: Q8_0 when the default type's block does not divide the row, else Q6_K
    // unless the file is Q8_0 anyway.
    if (ne0 % block_of(def) != 0)
      t = Type::Q8_0;
    else if (def != Type::Q8_0)
      t = Type::Q6_K;
  } else if (role == TensorRole::AttnV || role == TensorRole::AttnQkv) {
    if (iq4xs && s.n_head / s.n_head_kv >= 4)
      t = Type::Q5_K;
    else if ((q4km || q5km) && use_more_bits(layer, n))
      t = Type::Q6_K;
    else if (q4ks && layer < 4)
      t = Type::Q5_K;
    if (is_70b(s) && (t == Type::Q3_K || t == Type::Q4_K)) t = Type::Q5_K;
    if (mixtral) t = Type::Q8_0;
  } else if (role == TensorRole::AttnK) {
    if (mixtral) t = Type::Q8_0;
  } else if (role == TensorRole::AttnOutput) {
    if (mixtral && (q4km || q4ks || iq4xs)) t = Type::Q5_K;
  } else if (role == TensorRole::FfnDown || role == TensorRole::FfnDownExps ||
             role == TensorRole::FfnDownShexp) {
    if (q4km && use_more_bits(layer, n))
      t = Type::Q6_K;
    else if (iq4xs && layer < n / 8)
      t = Type::Q5_K;
    else if (q5km && use_more_bits(layer, n))
      t = Type::Q6_K;
    else if (q4ks && layer < n / 8)
      t = Type::Q5_K;
  }
  return fallback(t, ne0);
}

namespace {

// A qwen35 block: gated attention or Gated DeltaNet, the FFN with post_attention_norm; an MTP
// block (index >= n_layer) is a gated-attention block plus the NextN projection and norms.
template <class Add>
void plan_qwen35_block(const ModelShape& s, int i, Add& add) {
  const int64_t E = s.n_embd, F = s.n_ff, Q = s.n_q(), K = s.n_kv();
  const std::string p = "blk." + std::to_string(i) + ".";
  add(p + "attn_norm.weight", TensorRole::AttnNorm, i, {E});
  if (s.is_recurrent(i)) {
    const int64_t C = s.ssm_conv_dim(), Hv = s.ssm_v_heads;
    add(p + "attn_qkv.weight", TensorRole::AttnQkv, i, {E, C});
    add(p + "attn_gate.weight", TensorRole::AttnGate, i, {E, s.ssm_inner()});
    add(p + "ssm_conv1d.weight", TensorRole::SsmConv, i, {s.ssm_conv_kernel, C});
    add(p + "ssm_dt.bias", TensorRole::SsmDt, i, {Hv});
    add(p + "ssm_a", TensorRole::SsmA, i, {Hv});
    add(p + "ssm_beta.weight", TensorRole::SsmBeta, i, {E, Hv});
    add(p + "ssm_alpha.weight", TensorRole::SsmAlpha, i, {E, Hv});
    add(p + "ssm_norm.weight", TensorRole::SsmNorm, i, {s.ssm_head_dim});
    add(p + "ssm_out.weight", TensorRole::SsmOut, i, {s.ssm_inner(), E});
  } else {
    add(p + "attn_q.weight", TensorRole::AttnQ, i, {E, 2 * Q});
    add(p + "attn_k.weight", TensorRole::AttnK, i, {E, K});
    add(p + "attn_v.weight", TensorRole::AttnV, i, {E, K});
    add(p + "attn_output.weight", TensorRole::AttnOutput, i, {Q, E});
    add(p + "attn_q_norm.weight", TensorRole::AttnQNorm, i, {s.head_dim});
    add(p + "attn_k_norm.weight", TensorRole::AttnKNorm, i, {s.head_dim});
  }
  add(p + "post_attention_norm.weight", TensorRole::FfnNorm, i, {E});
  if (s.n_expert > 0) {
    const int64_t X = s.n_expert, FX = s.n_ff_exp, FS = s.n_ff_shexp;
    add(p + "ffn_gate_inp.weight", TensorRole::FfnGateInp, i, {E, X});
    add(p + "ffn_gate_exps.weight", TensorRole::FfnGateExps, i, {E, FX, X});
    add(p + "ffn_up_exps.weight", TensorRole::FfnUpExps, i, {E, FX, X});
    add(p + "ffn_down_exps.weight", TensorRole::FfnDownExps, i, {FX, E, X});
    if (FS > 0) {
      add(p + "ffn_gate_inp_shexp.weight", TensorRole::FfnGateInpShexp, i, {E});
      add(p + "ffn_gate_shexp.weight", TensorRole::FfnGateShexp, i, {E, FS});
      add(p + "ffn_up_shexp.weight", TensorRole::FfnUpShexp, i, {E, FS});
      add(p + "ffn_down_shexp.weight", TensorRole::FfnDownShexp, i, {FS, E});
    }
  } else {
    add(p + "ffn_gate.weight", TensorRole::FfnGate, i, {E, F});
    add(p + "ffn_up.weight", TensorRole::FfnUp, i, {E, F});
    add(p + "ffn_down.weight", TensorRole::FfnDown, i, {F, E});
  }
  if (i >= s.n_layer) {
    add(p + "nextn.eh_proj.weight", TensorRole::NextnEhProj, i, {2 * E, E});
    add(p + "nextn.enorm.weight", TensorRole::NextnNorm, i, {E});
    add(p + "nextn.hnorm.weight", TensorRole::NextnNorm, i, {E});
    add(p + "nextn.shared_head_norm.weight", TensorRole::NextnNorm, i, {E});
  }
}

}  // namespace

std::vector<TensorPlan> plan_tensors(const ModelShape& s, FileType ft) {
  check_shape(s);
  std::vector<TensorPlan> out;
  auto add = [&](std::string name, TensorRole role, int layer, std::vector<int64_t> ne) {
    const Type t = quant_type_for(s, ft, role, layer, ne[0]);
    out.push_back({std::move(name), role, layer, t, std::move(ne)});
  };
  const int64_t E = s.n_embd, F = s.n_ff, V = s.n_vocab, Q = s.n_q(), K = s.n_kv();
  add("token_embd.weight", TensorRole::TokenEmbd, -1, {E, V});
  add("output_norm.weight", TensorRole::OutputNorm, -1, {E});
  if (!s.tied) add("output.weight", TensorRole::Output, -1, {E, V});
  if (s.llama3_rope_freqs) add("rope_freqs.weight", TensorRole::RopeFreqs, -1, {s.head_dim / 2});
  if (s.qwen35_layers()) {
    for (int i = 0; i < s.n_layer + s.n_mtp; ++i) plan_qwen35_block(s, i, add);
    std::stable_sort(out.begin(), out.end(), [](const TensorPlan& a, const TensorPlan& b) {
      return a.layer != b.layer ? a.layer < b.layer : a.name < b.name;
    });
    return out;
  }
  for (int i = 0; i < s.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    add(p + "attn_norm.weight", TensorRole::AttnNorm, i, {E});
    add(p + "attn_q.weight", TensorRole::AttnQ, i, {E, Q});
    add(p + "attn_k.weight", TensorRole::AttnK, i, {E, K});
    add(p + "attn_v.weight", TensorRole::AttnV, i, {E, K});
    add(p + "attn_output.weight", TensorRole::AttnOutput, i, {Q, E});
    if (s.arch == Arch::Qwen2) {
      add(p + "attn_q.bias", TensorRole::AttnQBias, i, {Q});
      add(p + "attn_k.bias", TensorRole::AttnKBias, i, {K});
      add(p + "attn_v.bias", TensorRole::AttnVBias, i, {K});
    }
    if (s.arch == Arch::Qwen3 || s.arch == Arch::Qwen3Moe) {
      add(p + "attn_q_norm.weight", TensorRole::AttnQNorm, i, {s.head_dim});
      add(p + "attn_k_norm.weight", TensorRole::AttnKNorm, i, {s.head_dim});
    }
    add(p + "ffn_norm.weight", TensorRole::FfnNorm, i, {E});
    if (s.arch == Arch::Qwen3Moe) {
      const int64_t X = s.n_expert, FX = s.n_ff_exp;
      add(p + "ffn_gate_inp.weight", TensorRole::FfnGateInp, i, {E, X});
      add(p + "ffn_gate_exps.weight", TensorRole::FfnGateExps, i, {E, FX, X});
      add(p + "ffn_up_exps.weight", TensorRole::FfnUpExps, i, {E, FX, X});
      add(p + "ffn_down_exps.weight", TensorRole::FfnDownExps, i, {FX, E, X});
      continue;
    }
    add(p + "ffn_gate.weight", TensorRole::FfnGate, i, {E, F});
    add(p + "ffn_up.weight", TensorRole::FfnUp, i, {E, F});
    add(p + "ffn_down.weight", TensorRole::FfnDown, i, {F, E});
  }
  // llama.cpp's loader keeps tensors sorted by (block index, name), globals (-1) first, and
  // llama-quantize writes them in that order.
  std::stable_sort(out.begin(), out.end(), [](const TensorPlan& a, const TensorPlan& b) {
    return a.layer != b.layer ? a.layer < b.layer : a.name < b.name;
  });
  return out;
}

namespace {

constexpr float kWeightStd = 0.02f;
constexpr float kBiasStd = 0.02f;
constexpr uint64_t kChunkBytes = uint64_t(1) << 20;

// Llama 3.1's rope frequency factors (HF "llama3" rope scaling: factor 8, low_freq_factor 1,
// high_freq_factor 4, original context 8192): wavelengths below 8192/4 keep their frequency,
// those above 8192/1 are slowed 8x, and the band between is interpolated smoothly.
std::vector<float> llama3_rope_factors(int n_rot, double base) {
  const double factor = 8, low = 1, high = 4, orig = 8192;
  std::vector<float> out;
  for (int i = 0; i < n_rot / 2; ++i) {
    const double freq = std::pow(base, -2.0 * i / n_rot);
    const double wavelen = 2 * std::numbers::pi / freq;
    double f;
    if (wavelen < orig / high) {
      f = 1;
    } else if (wavelen > orig / low) {
      f = factor;
    } else {
      const double smooth = (orig / wavelen - low) / (high - low);
      f = 1 / ((1 - smooth) / factor + smooth);
    }
    out.push_back(static_cast<float>(f));
  }
  return out;
}

// The contents of a 1-D F32 tensor (norm weights near 1, small biases, rope factors).
std::vector<float> vector_tensor(const ModelShape& s, const TensorPlan& t, uint64_t seed) {
  const int64_t n = t.ne[0];
  if (t.role == TensorRole::RopeFreqs)
    return llama3_rope_factors(2 * static_cast<int>(n), s.rope_base);
  synth::Rng r(synth::chunk_seed(seed, t.name, 0));
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) {
    if (t.role == TensorRole::SsmA) {
      x = -(1.0f + 15.0f * r.uniform());  // -exp(A_log), A = U(1, 16) as Qwen3.5 initializes it
    } else if (t.role == TensorRole::SsmDt) {
      // dt_bias = softplus^-1(dt), dt log-uniform in [1e-3, 0.1]: decays e^-(a dt) of every speed
      const float dt = std::exp(std::log(1e-3f) + r.uniform() * std::log(100.0f));
      x = dt + std::log(-std::expm1(-dt));
    } else {
      x = is_norm(t.role) ? 0.9f + 0.2f * r.uniform() : kBiasStd * r.normal();
    }
  }
  return v;
}

void set_metadata(gguf::Writer& w, const ModelShape& s, FileType ft, uint64_t seed) {
  using gguf::Value;
  const std::string a = arch_name(s.arch);
  auto key = [&](const char* k) { return a + "." + k; };
  w.set("general.architecture", Value::str(a));
  w.set("general.type", Value::str("model"));
  w.set("general.name", Value::str(s.display_name.empty() ? s.name : s.display_name));
  if (!s.size_label.empty()) w.set("general.size_label", Value::str(s.size_label));
  w.set(key("block_count"), Value::u32(static_cast<uint32_t>(s.n_layer)));
  w.set(key("context_length"), Value::u32(static_cast<uint32_t>(s.n_ctx_train)));
  w.set(key("embedding_length"), Value::u32(static_cast<uint32_t>(s.n_embd)));
  w.set(key("feed_forward_length"), Value::u32(static_cast<uint32_t>(s.n_ff)));
  w.set(key("attention.head_count"), Value::u32(static_cast<uint32_t>(s.n_head)));
  w.set(key("attention.head_count_kv"), Value::u32(static_cast<uint32_t>(s.n_head_kv)));
  w.set(key("rope.freq_base"), Value::f32(s.rope_base));
  if (!s.rope_scaling.empty()) {
    w.set(key("rope.scaling.type"), Value::str(s.rope_scaling));
    w.set(key("rope.scaling.factor"), Value::f32(s.rope_scaling_factor));
    if (s.rope_scaling_orig_ctx > 0)
      w.set(key("rope.scaling.original_context_length"),
            Value::u32(static_cast<uint32_t>(s.rope_scaling_orig_ctx)));
  }
  w.set(key("attention.layer_norm_rms_epsilon"), Value::f32(s.rms_eps));
  if (s.arch != Arch::Qwen2 || s.head_dim != s.n_embd / s.n_head) {
    w.set(key("attention.key_length"), Value::u32(static_cast<uint32_t>(s.head_dim)));
    w.set(key("attention.value_length"), Value::u32(static_cast<uint32_t>(s.head_dim)));
  }
  if (s.arch == Arch::Llama) {
    w.set(key("rope.dimension_count"), Value::u32(static_cast<uint32_t>(s.head_dim)));
    w.set(key("vocab_size"), Value::u32(static_cast<uint32_t>(s.n_vocab)));
  }
  if (s.qwen35_layers()) {
    auto u32 = [](int64_t v) { return Value::u32(static_cast<uint32_t>(v)); };
    w.set(key("block_count"), u32(s.n_layer + s.n_mtp));
    if (s.n_mtp > 0) w.set(key("nextn_predict_layers"), u32(s.n_mtp));
    w.set(key("rope.dimension_count"), u32(s.n_rot));
    // IMRoPE sections as Qwen3.5's mrope_section [11, 11, 10] for 32 pairs: the pairs split in
    // three, the larger shares first.
    const int pairs = s.n_rot / 2;
    w.set(
        key("rope.dimension_sections"),
        Value::i32_array({pairs / 3 + (pairs % 3 > 0), pairs / 3 + (pairs % 3 > 1), pairs / 3, 0}));
    w.set(key("ssm.conv_kernel"), u32(s.ssm_conv_kernel));
    w.set(key("ssm.inner_size"), u32(s.ssm_inner()));
    w.set(key("ssm.state_size"), u32(s.ssm_head_dim));
    w.set(key("ssm.time_step_rank"), u32(s.ssm_v_heads));
    w.set(key("ssm.group_count"), u32(s.ssm_k_heads));
    w.set(key("full_attention_interval"), u32(s.full_attention_interval));
  }
  if (s.n_expert > 0) {
    w.set(key("expert_count"), Value::u32(static_cast<uint32_t>(s.n_expert)));
    w.set(key("expert_used_count"), Value::u32(static_cast<uint32_t>(s.n_expert_used)));
    w.set(key("expert_feed_forward_length"), Value::u32(static_cast<uint32_t>(s.n_ff_exp)));
    if (s.n_ff_shexp > 0)
      w.set(key("expert_shared_feed_forward_length"),
            Value::u32(static_cast<uint32_t>(s.n_ff_shexp)));
  }
  w.set("general.file_type", Value::u32(static_cast<uint32_t>(ft)));
  w.set("general.quantization_version", Value::u32(2));

  const SynthVocab v = make_vocab(s);
  w.set("tokenizer.ggml.model", Value::str("gpt2"));
  w.set("tokenizer.ggml.pre", Value::str(v.pre));
  w.set("tokenizer.ggml.tokens", Value::string_array(v.tokens));
  w.set("tokenizer.ggml.token_type", Value::i32_array(v.token_types));
  w.set("tokenizer.ggml.merges", Value::string_array(v.merges));
  w.set("tokenizer.ggml.bos_token_id", Value::u32(static_cast<uint32_t>(v.bos)));
  w.set("tokenizer.ggml.eos_token_id", Value::u32(static_cast<uint32_t>(v.eos)));
  if (v.pad >= 0)
    w.set("tokenizer.ggml.padding_token_id", Value::u32(static_cast<uint32_t>(v.pad)));
  w.set("tokenizer.ggml.add_bos_token", Value::boolean(v.add_bos));
  w.set("tokenizer.chat_template", Value::str(v.chat_template));

  w.set("straw.synth.preset", Value::str(s.name));
  w.set("straw.synth.seed", Value::u64(seed));
}

// Streams one matrix: chunks of whole blocks, generated by `threads` threads a batch at a time
// and written in order.
void write_matrix(gguf::Writer& w, const TensorPlan& t, uint64_t seed, int threads,
                  std::vector<uint8_t>& buf, uint64_t& done, uint64_t total,
                  const SynthProgress& progress) {
  const quant::TypeInfo& ti = quant::type_info(t.type);
  const int64_t n_blocks = t.n_elements() / ti.block_size;
  const int64_t per_chunk = std::max<int64_t>(1, static_cast<int64_t>(kChunkBytes / ti.type_size));
  const int64_t n_chunks = (n_blocks + per_chunk - 1) / per_chunk;
  // A few chunks per thread per batch, at most 64 MiB in flight.
  const int64_t per_batch = std::min<int64_t>(4 * static_cast<int64_t>(threads), 64);
  buf.resize(static_cast<size_t>(per_batch * per_chunk) * ti.type_size);
  // The conv taps mix four positions of one channel: O(1) weights, not a projection's 0.02.
  const float sigma = t.role == TensorRole::SsmConv ? 0.3f : kWeightStd;
  // An unsupported type throws here, on this thread, rather than inside a worker.
  random_blocks(t.type, buf.data(), 0, seed, sigma);
  for (int64_t c0 = 0; c0 < n_chunks; c0 += per_batch) {
    const int64_t c1 = std::min(n_chunks, c0 + per_batch);
    const int n_threads = static_cast<int>(std::min<int64_t>(threads, c1 - c0));
    auto work = [&](int tid) {
      for (int64_t c = c0 + tid; c < c1; c += n_threads) {
        const int64_t b0 = c * per_chunk, nb = std::min(per_chunk, n_blocks - b0);
        random_blocks(t.type, buf.data() + static_cast<size_t>((c - c0) * per_chunk) * ti.type_size,
                      nb, synth::chunk_seed(seed, t.name, static_cast<uint64_t>(c)), sigma);
      }
    };
    std::vector<std::thread> pool;
    for (int k = 1; k < n_threads; ++k) pool.emplace_back(work, k);
    work(0);
    for (std::thread& th : pool) th.join();
    const int64_t blocks = std::min(n_blocks, c1 * per_chunk) - c0 * per_chunk;
    const size_t bytes = static_cast<size_t>(blocks) * ti.type_size;
    w.write(buf.data(), bytes);
    done += bytes;
    if (progress) progress(done, total);
  }
}

}  // namespace

SynthStats synthesize(const std::string& path, const SynthOptions& o,
                      const SynthProgress& progress) {
  const ModelShape& s = o.shape;
  const std::vector<TensorPlan> plan = plan_tensors(s, o.type);
  int threads = o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::clamp(threads, 1, 256);

  gguf::Writer w(path);
  set_metadata(w, s, o.type, o.seed);
  uint64_t total = 0;
  for (const TensorPlan& t : plan) {
    w.add_tensor(t.name, t.type, t.ne);
    total += t.bytes();
  }
  w.begin_data();

  SynthStats st;
  st.n_tensors = plan.size();
  st.tensor_bytes = w.bytes_remaining();
  uint64_t done = 0;
  std::vector<uint8_t> buf;
  for (const TensorPlan& t : plan) {
    if (o.no_data) {
      w.skip(t.bytes());
      continue;
    }
    if (t.ne.size() == 1) {
      const std::vector<float> v = vector_tensor(s, t, o.seed);
      w.write(v.data(), v.size() * sizeof(float));
      done += t.bytes();
    } else {
      write_matrix(w, t, o.seed, threads, buf, done, total, progress);
    }
  }
  w.finish();
  st.file_bytes = std::filesystem::file_size(path);
  if (progress) progress(total, total);
  return st;
}

}  // namespace straw::model
