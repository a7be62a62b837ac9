// Byte-level BPE over one pre-tokenized piece, as llama.cpp's llm_tokenizer_bpe_session does it:
// the piece's bytes become GPT-2 byte characters, then the adjacent pair with the lowest merge
// rank is merged until none is left (ties: the leftmost pair), and each final symbol is emitted
// as its token, or, when it is not a token, as the tokens of its single bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer/vocab.h"

namespace straw::model::detail {

class BpeEncoder {
 public:
  // Working memory for encode(), reused across pieces so the hot loop does not allocate.
  struct Scratch {
    struct Symbol {
      int32_t id;      // symbol id (see below); -1 when the text is in no token or merge
      uint32_t start;  // byte range in the piece
      uint32_t len;    // 0 once merged into its left neighbour
      int32_t prev, next;
    };
    struct Candidate {
      int32_t rank;
      int32_t left, right;
      uint32_t len;  // len(left) + len(right) when queued; a mismatch later means stale
      int32_t merged_id;
    };
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
    std::string encoded;
  };

  // Parses `merges` ("left right", split at the first space after the first byte; the index is
  // the rank, and a repeated pair keeps its first rank). Throws straw::Error for an entry with no
  // such space. `ignore_merges`: a piece that is itself a token is emitted whole (Llama 3).
  BpeEncoder(const Vocab& vocab, const std::vector<std::string>& merges, bool ignore_merges);

  // Appends the tokens of `piece` (raw UTF-8 bytes) to `out`.
  void encode(std::string_view piece, Scratch& scratch, std::vector<int32_t>& out) const;

  size_t n_merges() const { return n_merges_; }

 private:
  // Open-addressing map (left symbol id, right symbol id) -> (rank, merged symbol id).
  struct Slot {
    uint64_t key;
    int32_t rank;
    int32_t merged_id;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  const Slot* find_merge(int32_t left, int32_t right) const;
  void insert_merge(int32_t left, int32_t right, int32_t rank, int32_t merged_id);

  const Vocab& vocab_;
  bool ignore_merges_;
  size_t n_merges_ = 0;
  // Symbol ids: token ids for texts in the vocabulary, then ids from vocab.size() up for texts
  // that occur only in merges.
  std::vector<Slot> slots_;
  uint64_t slot_mask_ = 0;
  int32_t byte_symbol_[256];  // symbol id of each byte's GPT-2 character
  int32_t byte_token_[256];   // token whose text is that single raw byte (the fallback), or -1
};

}  // namespace straw::model::detail
