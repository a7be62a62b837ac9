#include "model/tokenizer/bpe.h"

#include <algorithm>
#include <bit>
#include <unordered_map>

#include "model/tokenizer/unicode.h"
#include "util/str.h"

namespace straw::model::detail {
namespace {

uint64_t pair_key(int32_t left, int32_t right) {
  return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
}

uint64_t mix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  return k;
}

// The GPT-2 character string for the bytes of `raw`, appended to `out`.
void append_gpt2_chars(std::string& out, std::string_view raw) {
  for (const char ch : raw) unicode::append_utf8(out, unicode::byte_to_gpt2_cpt(uint8_t(ch)));
}

// Min-heap order on (rank, left position): the heap's top is the lowest rank, leftmost.
bool later(const BpeEncoder::Scratch::Candidate& a, const BpeEncoder::Scratch::Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
}

}  // namespace

BpeEncoder::BpeEncoder(const Vocab& vocab, const std::vector<std::string>& merges,
                       bool ignore_merges)
    : vocab_(vocab), ignore_merges_(ignore_merges), n_merges_(merges.size()) {
  const size_t capacity = std::bit_ceil(std::max<size_t>(16, merges.size() * 2));
  slots_.assign(capacity, Slot{kEmpty, 0, 0});
  slot_mask_ = capacity - 1;

  // Texts that appear in merges but are not tokens get ids past the vocabulary.
  std::unordered_map<std::string, int32_t> extra;
  auto symbol_of = [&](std::string_view s) -> int32_t {
    if (const int32_t id = vocab.find(s); id >= 0) return id;
    const auto [it, added] = extra.try_emplace(std::string(s), 0);
    if (added) it->second = vocab.size() + static_cast<int32_t>(extra.size()) - 1;
    return it->second;
  };
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& m = merges[rank];
    const size_t space = m.find(' ', 1);
    if (space == std::string::npos) {
      fail("BPE merge ", rank, " ('", m,
           "') is not two symbols separated by a space (tokenizer.ggml.merges); the vocabulary "
           "is malformed, re-convert the model");
    }
    const std::string_view left(m.data(), space);
    const std::string_view right(m.data() + space + 1, m.size() - space - 1);
    joined.assign(left);
    joined.append(right);
    const int32_t l = symbol_of(left);
    const int32_t r = symbol_of(right);
    if (find_merge(l, r) == nullptr)
      insert_merge(l, r, static_cast<int32_t>(rank), symbol_of(joined));
  }

  std::string ch;
  for (int b = 0; b < 256; ++b) {
    ch.clear();
    unicode::append_utf8(ch, unicode::byte_to_gpt2_cpt(uint8_t(b)));
    int32_t id = vocab.find(ch);
    if (id < 0) {
      const auto it = extra.find(ch);
      id = it == extra.end() ? -1 : it->second;
    }
    byte_symbol_[b] = id;
    const char raw = static_cast<char>(b);
    byte_token_[b] = vocab.find(std::string_view(&raw, 1));
  }
}

const BpeEncoder::Slot* BpeEncoder::find_merge(int32_t left, int32_t right) const {
  const uint64_t key = pair_key(left, right);
  for (uint64_t i = mix(key) & slot_mask_;; i = (i + 1) & slot_mask_) {
    const Slot& s = slots_[i];
    if (s.key == key) return &s;
    if (s.key == kEmpty) return nullptr;
  }
}

void BpeEncoder::insert_merge(int32_t left, int32_t right, int32_t rank, int32_t merged_id) {
  const uint64_t key = pair_key(left, right);
  uint64_t i = mix(key) & slot_mask_;
  while (slots_[i].key != kEmpty) i = (i + 1) & slot_mask_;
  slots_[i] = Slot{key, rank, merged_id};
}

void BpeEncoder::encode(std::string_view piece, Scratch& scratch, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    scratch.encoded.clear();
    append_gpt2_chars(scratch.encoded, piece);
    if (const int32_t id = vocab_.find(scratch.encoded); id >= 0) {
      out.push_back(id);
      return;
    }
  }

  auto& sym = scratch.symbols;
  auto& heap = scratch.heap;
  const auto n = static_cast<int32_t>(piece.size());
  sym.resize(piece.size());
  for (int32_t i = 0; i < n; ++i) {
    sym[i] = {byte_symbol_[uint8_t(piece[i])], uint32_t(i), 1, i - 1, i + 1 < n ? i + 1 : -1};
  }
  heap.clear();
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0 || sym[l].id < 0 || sym[r].id < 0) return;
    const Slot* m = find_merge(sym[l].id, sym[r].id);
    if (m == nullptr) return;
    heap.push_back({m->rank, l, r, sym[l].len + sym[r].len, m->merged_id});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 1; i < n; ++i) try_add(i - 1, i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Scratch::Candidate c = heap.back();
    heap.pop_back();
    auto& l = sym[c.left];
    auto& r = sym[c.right];
    // Stale: one side was merged away, or the right side grew since this pair was queued.
    if (l.len == 0 || r.len == 0 || l.len + r.len != c.len) continue;
    l.len += r.len;
    l.id = c.merged_id;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    try_add(l.prev, c.left);
    try_add(c.left, l.next);
  }

  for (int32_t i = 0; i >= 0; i = sym[i].next) {
    const auto& s = sym[i];
    if (s.id >= 0 && s.id < vocab_.size()) {
      out.push_back(s.id);
      continue;
    }
    // Not a token: llama.cpp looks up each byte of the symbol's GPT-2 text as a one-byte token
    // and drops the bytes that are none.
    scratch.encoded.clear();
    append_gpt2_chars(scratch.encoded, piece.substr(s.start, s.len));
    for (const char ch : scratch.encoded) {
      if (const int32_t t = byte_token_[uint8_t(ch)]; t >= 0) out.push_back(t);
    }
  }
}

}  // namespace straw::model::detail
