#include "model/tokenizer/special_split.h"

#include <algorithm>

namespace straw::model::detail {

SpecialSplitter::SpecialSplitter(std::vector<Special> specials) : specials_(std::move(specials)) {
  nodes_.emplace_back();
  for (size_t i = 0; i < specials_.size(); ++i) {
    const std::string_view text = specials_[i].text;
    if (text.empty()) continue;
    any_always_ = any_always_ || specials_[i].always;
    first_byte_[uint8_t(text[0])] = true;
    int32_t node = 0;
    for (const char ch : text) {
      int32_t next = child(node, uint8_t(ch));
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        auto& edges = nodes_[node].next;
        const auto pos =
            std::lower_bound(edges.begin(), edges.end(), std::make_pair(uint8_t(ch), 0));
        edges.insert(pos, {uint8_t(ch), next});
        nodes_.emplace_back();
      }
      node = next;
    }
    // Texts are distinct (the vocabulary has no duplicates), so each end node has one special.
    nodes_[node].special = static_cast<int32_t>(i);
  }
}

int32_t SpecialSplitter::child(int32_t node, uint8_t byte) const {
  const auto& edges = nodes_[node].next;
  const auto it = std::lower_bound(edges.begin(), edges.end(), std::make_pair(byte, int32_t{-1}));
  return it != edges.end() && it->first == byte ? it->second : -1;
}

void SpecialSplitter::split(std::string_view text, bool parse_special,
                            std::vector<Fragment>& out) const {
  out.clear();
  if (text.empty()) return;
  if (!parse_special && !any_always_) {
    out.push_back({-1, 0, text.size()});
    return;
  }

  // Every occurrence of every applicable special text: (priority, start).
  std::vector<std::pair<int32_t, size_t>> hits;
  for (size_t pos = 0; pos < text.size(); ++pos) {
    if (!first_byte_[uint8_t(text[pos])]) continue;
    int32_t node = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      node = child(node, uint8_t(text[i]));
      if (node < 0) break;
      const int32_t special = nodes_[node].special;
      if (special >= 0 && (parse_special || specials_[special].always))
        hits.push_back({special, pos});
    }
  }
  if (hits.empty()) {
    out.push_back({-1, 0, text.size()});
    return;
  }
  std::sort(hits.begin(), hits.end());

  // Token by token, take the leftmost occurrences that neither overlap each other nor any cut
  // made by an earlier (longer) token.
  std::vector<uint8_t> taken(text.size(), 0);
  std::vector<std::pair<size_t, int32_t>> cuts;  // (start, special)
  size_t free_from = 0;
  for (size_t h = 0; h < hits.size(); ++h) {
    const auto [special, pos] = hits[h];
    if (h == 0 || hits[h - 1].first != special) free_from = 0;
    const size_t len = specials_[special].text.size();
    if (pos < free_from) continue;
    if (std::find(taken.begin() + pos, taken.begin() + pos + len, 1) != taken.begin() + pos + len) {
      continue;
    }
    std::fill(taken.begin() + pos, taken.begin() + pos + len, 1);
    cuts.push_back({pos, special});
    free_from = pos + len;
  }
  std::sort(cuts.begin(), cuts.end());

  size_t pos = 0;
  for (const auto& [start, special] : cuts) {
    if (start > pos) out.push_back({-1, pos, start - pos});
    out.push_back({specials_[special].id, 0, 0});
    pos = start + specials_[special].text.size();
  }
  if (pos < text.size()) out.push_back({-1, pos, text.size() - pos});
}

}  // namespace straw::model::detail
