// The vocabulary as the tokenizers use it internally: token texts, scores, llama.cpp-style token
// attributes and an exact text -> id index.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace straw::model::detail {

// Token attributes (llama.cpp's llama_token_attr bits), derived from tokenizer.ggml.token_type
// and adjusted by the special-token rules (for example, end-of-generation texts become CONTROL).
// Zero is "undefined"; such tokens and UNUSED ones render as nothing.
inline constexpr uint16_t kAttrUnknown = 1 << 0;
inline constexpr uint16_t kAttrUnused = 1 << 1;
inline constexpr uint16_t kAttrNormal = 1 << 2;
inline constexpr uint16_t kAttrControl = 1 << 3;
inline constexpr uint16_t kAttrUserDefined = 1 << 4;
inline constexpr uint16_t kAttrByte = 1 << 5;

// Exact text -> token id index: open addressing over (hash tag, id) slots, compared against the
// token texts themselves. One flat array keeps lookups to about two cache misses, which matters
// for the 100k+ lookups of building a large BPE vocabulary and the per-piece lookups of tokenizing.
class TokenIndex {
 public:
  // Indexes texts[0..n). Returns -1, or the index of the first text that repeats an earlier one
  // (that one is then left out of the index).
  int64_t build(const std::vector<std::string>& texts);
  // The id whose text is exactly `s`, or -1.
  int32_t find(std::string_view s, const std::vector<std::string>& texts) const;

 private:
  struct Slot {
    uint32_t tag;  // high bits of the hash, to skip most text comparisons
    int32_t id;    // -1: empty
  };
  std::vector<Slot> slots_;
  uint64_t mask_ = 0;
};

struct Vocab {
  std::vector<std::string> text;
  std::vector<float> score;
  std::vector<uint16_t> attr;
  TokenIndex index;

  int32_t size() const { return static_cast<int32_t>(text.size()); }
  // The id of the token whose text is exactly `s`, or -1.
  int32_t find(std::string_view s) const { return index.find(s, text); }
};

}  // namespace straw::model::detail
