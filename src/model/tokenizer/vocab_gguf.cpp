// Reading the tokenizer.ggml.* metadata of a GGUF file into VocabData.
#include "gguf/gguf.h"
#include "model/tokenizer/tokenizer.h"
#include "util/str.h"

namespace straw::model {
namespace {

// A special token id key: absent, negative or outside the vocabulary all mean "not given" (as in
// llama.cpp, which then keeps the model type's default).
int32_t read_special_id(const gguf::Reader& r, const char* key, size_t n_tokens) {
  const std::optional<int64_t> v = r.find_i64(key);
  if (!v || *v < 0 || static_cast<uint64_t>(*v) >= n_tokens) return -1;
  return static_cast<int32_t>(*v);
}

}  // namespace

VocabData read_vocab(const gguf::Reader& r) {
  VocabData v;
  v.model = r.get_string(gguf_keys::kModel);
  v.pre = r.find_string(gguf_keys::kPre).value_or("");
  v.tokens = r.get_string_array(gguf_keys::kTokens);
  if (r.has(gguf_keys::kTokenType)) v.token_types = r.get_i32_array(gguf_keys::kTokenType);
  if (const gguf::Value* scores = r.find(gguf_keys::kScores)) {
    // llama.cpp accepts integer scores too.
    if (scores->is_array() && gguf::is_integer_type(scores->elem_type())) {
      for (const int32_t s : r.get_i32_array(gguf_keys::kScores)) v.scores.push_back(float(s));
    } else {
      v.scores = r.get_f32_array(gguf_keys::kScores);
    }
  }
  if (v.model == "gpt2") {
    if (!r.has(gguf_keys::kMerges)) {
      fail(r.path(), ": metadata key '", gguf_keys::kMerges,
           "' is missing; a byte-level BPE vocabulary needs its merges, re-convert the model");
    }
    v.merges = r.get_string_array(gguf_keys::kMerges);
  }
  const size_t n = v.tokens.size();
  v.bos = read_special_id(r, "tokenizer.ggml.bos_token_id", n);
  v.eos = read_special_id(r, "tokenizer.ggml.eos_token_id", n);
  v.eot = read_special_id(r, "tokenizer.ggml.eot_token_id", n);
  v.eom = read_special_id(r, "tokenizer.ggml.eom_token_id", n);
  v.unk = read_special_id(r, "tokenizer.ggml.unknown_token_id", n);
  v.pad = read_special_id(r, "tokenizer.ggml.padding_token_id", n);
  v.add_bos = r.find_bool("tokenizer.ggml.add_bos_token");
  v.add_eos = r.find_bool("tokenizer.ggml.add_eos_token");
  v.add_space_prefix = r.find_bool("tokenizer.ggml.add_space_prefix");
  return v;
}

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const gguf::Reader& r) {
  VocabData v = read_vocab(r);
  try {
    return std::make_unique<Tokenizer>(std::move(v));
  } catch (const Error& e) {
    fail(r.path(), ": ", e.what());
  }
}

}  // namespace straw::model
