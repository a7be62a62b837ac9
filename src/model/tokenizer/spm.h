// SentencePiece (tokenizer.ggml.model = "llama") as llama.cpp's llm_tokenizer_spm_session runs
// it: the text (spaces already replaced by U+2581) starts as one symbol per UTF-8 character; the
// adjacent pair whose concatenation is a token with the highest score is merged until no pair
// forms a token (ties: the leftmost pair); symbols that are not tokens become byte tokens.
//
// When no token has a U+2581 right after another character (true of SentencePiece vocabularies
// trained with whitespace splitting, such as Llama's), no merge can cross the start of a word, so
// each word is merged on its own: the same result, with small queues instead of one per text.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "model/tokenizer/vocab.h"

namespace straw::model::detail {

class SpmEncoder {
 public:
  struct Scratch {
    struct Symbol {
      uint32_t start, len;  // byte range in the text; len 0 once merged into its left neighbour
      int32_t prev, next;
    };
    struct Candidate {
      float score;
      int32_t left, right;
      uint32_t len;  // len(left) + len(right) when queued
    };
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
  };

  // `unk`: the token emitted for a byte that has neither a <0xXX> token nor a one-byte token
  // (-1: such bytes are dropped).
  SpmEncoder(const Vocab& vocab, int32_t unk);

  // Appends the tokens of `text` (already escaped) to `out`.
  void encode(std::string_view text, Scratch& scratch, std::vector<int32_t>& out) const;

 private:
  // Merges scratch.symbols (one chain) and appends the result.
  void merge_and_emit(std::string_view text, Scratch& scratch, std::vector<int32_t>& out) const;

  const Vocab& vocab_;
  bool split_words_ = false;
  int32_t byte_token_[256];
};

}  // namespace straw::model::detail
