#include "model/tokenizer/spm.h"

#include <algorithm>
#include <cstdio>

#include "model/tokenizer/unicode.h"

namespace straw::model::detail {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581

// Max-heap order on score, then min on left position: the top is the best-scoring leftmost pair.
bool worse(const SpmEncoder::Scratch::Candidate& a, const SpmEncoder::Scratch::Candidate& b) {
  return a.score != b.score ? a.score < b.score : a.left > b.left;
}

}  // namespace

SpmEncoder::SpmEncoder(const Vocab& vocab, int32_t unk) : vocab_(vocab) {
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    int32_t id = vocab.find(hex);
    if (id < 0) {
      const char raw = static_cast<char>(b);
      id = vocab.find(std::string_view(&raw, 1));
    }
    byte_token_[b] = id >= 0 ? id : unk;
  }
  // Words can be merged separately unless some token joins a character and a following U+2581.
  split_words_ = true;
  for (const std::string& t : vocab.text) {
    for (size_t p = t.find(kSpaceMark, 1); p != std::string::npos; p = t.find(kSpaceMark, p + 1)) {
      if (p < kSpaceMark.size() ||
          t.compare(p - kSpaceMark.size(), kSpaceMark.size(), kSpaceMark)) {
        split_words_ = false;
        break;
      }
    }
    if (!split_words_) break;
  }
}

void SpmEncoder::encode(std::string_view text, Scratch& scratch, std::vector<int32_t>& out) const {
  auto& sym = scratch.symbols;
  for (size_t off = 0; off < text.size();) {
    // One word (or the whole text): symbols up to the next U+2581 that follows another character.
    sym.clear();
    bool prev_space = false;
    while (off < text.size()) {
      const size_t len = std::min(unicode::utf8_seq_len(uint8_t(text[off])), text.size() - off);
      const bool space = text.compare(off, len, kSpaceMark) == 0;
      if (split_words_ && space && !sym.empty() && !prev_space) break;
      const auto i = static_cast<int32_t>(sym.size());
      if (i > 0) sym.back().next = i;
      sym.push_back({uint32_t(off), uint32_t(len), i - 1, -1});
      prev_space = space;
      off += len;
    }
    merge_and_emit(text, scratch, out);
  }
}

void SpmEncoder::merge_and_emit(std::string_view text, Scratch& scratch,
                                std::vector<int32_t>& out) const {
  auto& sym = scratch.symbols;
  auto& heap = scratch.heap;
  heap.clear();
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const uint32_t len = sym[l].len + sym[r].len;
    const int32_t id = vocab_.find(text.substr(sym[l].start, len));
    if (id < 0) return;
    heap.push_back({vocab_.score[id], l, r, len});
    std::push_heap(heap.begin(), heap.end(), worse);
  };
  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) try_add(i - 1, i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const Scratch::Candidate c = heap.back();
    heap.pop_back();
    auto& l = sym[c.left];
    auto& r = sym[c.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != c.len) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    try_add(l.prev, c.left);
    try_add(c.left, l.next);
  }

  for (int32_t i = 0; i >= 0; i = sym[i].next) {
    const std::string_view piece = text.substr(sym[i].start, sym[i].len);
    if (const int32_t id = vocab_.find(piece); id >= 0) {
      out.push_back(id);
      continue;
    }
    for (const char ch : piece) {
      if (const int32_t t = byte_token_[uint8_t(ch)]; t >= 0) out.push_back(t);
    }
  }
}

}  // namespace straw::model::detail
