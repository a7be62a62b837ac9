// straw's tokenizers: byte-level BPE (tokenizer.ggml.model "gpt2") and SentencePiece ("llama"),
// reproducing llama.cpp's token ids exactly (its tokenizer test vectors and the golden prompts in
// the shared test data), plus detokenization and a UTF-8 streaming helper.
//
// Tokenizing runs in three steps, as in llama.cpp:
//  1. Special tokens (CONTROL, USER_DEFINED and UNKNOWN token texts) are cut out of the text,
//     longest text first; USER_DEFINED ones always, the others only when parse_special is set.
//  2. Each remaining run of text is tokenized: BPE splits it with the pre-tokenizer named by
//     tokenizer.ggml.pre (pretokenize.h) and merges within each piece by rank; SPM prefixes a
//     space when add_space_prefix is set and the run is at the start or follows a special token,
//     replaces spaces with U+2581 and merges by score.
//  3. With add_special, BOS goes in front when add_bos and EOS at the end when add_eos.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace straw::gguf {
class Reader;
}

namespace straw::model {

// Everything the tokenizer takes from the tokenizer.ggml.* metadata.
struct VocabData {
  std::string model;  // "gpt2" (byte-level BPE) | "llama" (SentencePiece)
  std::string pre;    // pre-tokenizer name for BPE ("" -> "default"); ignored for SPM
  std::vector<std::string> tokens;
  std::vector<int32_t> token_types;  // llama.cpp token types; empty: all NORMAL
  std::vector<float> scores;         // SPM merge scores; empty: all 0
  std::vector<std::string> merges;   // BPE merges "left right", by rank
  // Special token ids; -1 means "not given", which selects llama.cpp's default for the model type
  // (SPM: bos 1, eos 2, unk 0; BPE: bos = eos = 11) when that id is inside the vocabulary.
  int32_t bos = -1, eos = -1, eot = -1, eom = -1, unk = -1, pad = -1;
  // Unset: the model type's default (SPM: add_bos and add_space_prefix; Llama 3 BPE: add_bos).
  std::optional<bool> add_bos, add_eos, add_space_prefix;
};

namespace gguf_keys {
inline constexpr const char* kModel = "tokenizer.ggml.model";
inline constexpr const char* kPre = "tokenizer.ggml.pre";
inline constexpr const char* kTokens = "tokenizer.ggml.tokens";
inline constexpr const char* kTokenType = "tokenizer.ggml.token_type";
inline constexpr const char* kScores = "tokenizer.ggml.scores";
inline constexpr const char* kMerges = "tokenizer.ggml.merges";
}  // namespace gguf_keys

// Reads the tokenizer.ggml.* keys. Special ids outside the vocabulary are treated as absent (as
// llama.cpp does, which then keeps its default). Throws straw::Error when a required key
// (model, tokens; merges for BPE) is missing or has the wrong type.
VocabData read_vocab(const gguf::Reader& r);

class Tokenizer {
 public:
  // Builds the lookup tables. Throws straw::Error when the data is inconsistent: an unsupported
  // model or pre-tokenizer, array sizes that do not match the token count, a duplicate token
  // text, a special id outside the vocabulary, a merge that does not parse, add_bos/add_eos
  // without the token.
  explicit Tokenizer(VocabData v);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  static std::unique_ptr<Tokenizer> from_gguf(const gguf::Reader& r);

  // Token ids for `text` (UTF-8; invalid bytes are tokenized as U+FFFD, as llama.cpp does).
  std::vector<int32_t> tokenize(std::string_view text, bool add_special, bool parse_special) const;

  // The bytes one token stands for. CONTROL and UNKNOWN tokens give "" unless `special`;
  // USER_DEFINED ones give their text. Throws straw::Error for an id outside the vocabulary.
  std::string token_to_piece(int32_t id, bool special) const;
  // The concatenated pieces; with add_space_prefix (SPM) one leading space of the first piece is
  // dropped. Unlike llama.cpp's llama_detokenize this applies no clean_up_tokenization_spaces
  // step, so it gives back exactly what tokenize() read.
  std::string detokenize(std::span<const int32_t> ids, bool special) const;

  int32_t n_vocab() const;
  int32_t bos() const;  // -1 when the vocabulary has none
  int32_t eos() const;  // -1 when the vocabulary has none
  bool add_bos() const;
  bool add_eos() const;
  bool is_spm() const;  // SentencePiece ("llama"); otherwise byte-level BPE
  // End of generation: eos, eot, eom and the tokens with end-of-turn texts (<|im_end|>,
  // <|endoftext|>, <|eot_id|>, <|eom_id|>, <|end_of_text|>, <|end|>, </s>, <end_of_turn>, ...).
  bool is_eog(int32_t id) const;
  bool is_control(int32_t id) const;
  // The vocabulary text of a token (BPE: in GPT-2 byte characters; SPM: with U+2581 for spaces).
  const std::string& token_text(int32_t id) const;
  // Exact vocabulary text lookup.
  std::optional<int32_t> find_token(std::string_view text) const;

 private:
  struct State;
  std::unique_ptr<const State> s_;
};

// Turns a stream of token pieces into whole UTF-8 characters: push() returns the bytes received
// so far up to the last complete character and holds back an incomplete multi-byte sequence at
// the end; flush() returns whatever is held back. Bytes that cannot start or continue a sequence
// are passed through as they are.
class Utf8Stream {
 public:
  std::string push(std::string_view bytes);
  std::string flush();

 private:
  std::string pending_;
};

}  // namespace straw::model
