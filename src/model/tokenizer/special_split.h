// Cutting special tokens out of the input text, with the result of llama.cpp's
// tokenizer_st_partition: special tokens are taken in order (longest text first); each one cuts
// every leftmost non-overlapping occurrence that lies entirely inside text not already cut.
//
// Instead of searching the text once per special token (hundreds of passes for Llama 3's
// reserved tokens), one pass walks a trie of the special texts to list every occurrence, and
// the cuts are then chosen token by token from that list.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace straw::model::detail {

// One run of the input: a special token, or a byte range of ordinary text.
struct Fragment {
  int32_t token;  // -1 for text
  size_t offset, length;
};

class SpecialSplitter {
 public:
  struct Special {
    int32_t id;
    std::string_view text;  // must outlive the splitter
    bool always;            // matched even when parse_special is false (USER_DEFINED tokens)
  };
  // `specials` in priority order.
  explicit SpecialSplitter(std::vector<Special> specials);

  // Replaces `out` with the fragments of `text`.
  void split(std::string_view text, bool parse_special, std::vector<Fragment>& out) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> next;  // byte -> child node, sorted by byte
    int32_t special = -1;                           // index into specials_ ending here
  };
  int32_t child(int32_t node, uint8_t byte) const;

  std::vector<Special> specials_;
  bool any_always_ = false;
  std::vector<Node> nodes_;
  bool first_byte_[256] = {};
};

}  // namespace straw::model::detail
