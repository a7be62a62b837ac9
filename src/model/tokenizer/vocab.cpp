#include "model/tokenizer/vocab.h"

#include <algorithm>
#include <bit>

namespace straw::model::detail {

int64_t TokenIndex::build(const std::vector<std::string>& texts) {
  const size_t capacity = std::bit_ceil(std::max<size_t>(16, texts.size() * 2));
  slots_.assign(capacity, Slot{0, -1});
  mask_ = capacity - 1;
  for (size_t i = 0; i < texts.size(); ++i) {
    const uint64_t h = std::hash<std::string_view>{}(texts[i]);
    const auto tag = static_cast<uint32_t>(h >> 32);
    for (uint64_t j = h & mask_;; j = (j + 1) & mask_) {
      Slot& s = slots_[j];
      if (s.id < 0) {
        s = Slot{tag, static_cast<int32_t>(i)};
        break;
      }
      if (s.tag == tag && texts[s.id] == texts[i]) return static_cast<int64_t>(i);
    }
  }
  return -1;
}

int32_t TokenIndex::find(std::string_view s, const std::vector<std::string>& texts) const {
  if (slots_.empty()) return -1;
  const uint64_t h = std::hash<std::string_view>{}(s);
  const auto tag = static_cast<uint32_t>(h >> 32);
  for (uint64_t j = h & mask_;; j = (j + 1) & mask_) {
    const Slot& slot = slots_[j];
    if (slot.id < 0) return -1;
    if (slot.tag == tag && texts[slot.id] == s) return slot.id;
  }
}

}  // namespace straw::model::detail
