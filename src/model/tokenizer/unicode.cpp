#include "model/tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace straw::model::unicode {
namespace {

// Flags of every code point in the Basic Multilingual Plane, expanded once from the range table so
// the pre-tokenizers' hot loops avoid a binary search for nearly all text.
struct BmpTable {
  std::array<uint16_t, 0x10000> flags{};
  BmpTable() {
    for (size_t i = 0; i < kFlagRangeCount; ++i) {
      const uint32_t begin = kFlagRanges[i].start;
      if (begin >= 0x10000) break;
      const uint32_t end =
          i + 1 < kFlagRangeCount ? std::min<uint32_t>(kFlagRanges[i + 1].start, 0x10000) : 0x10000;
      std::fill(flags.begin() + begin, flags.begin() + end, kFlagRanges[i].flags);
    }
  }
};

const BmpTable& bmp_table() {
  static const BmpTable table;
  return table;
}

// bytes_to_unicode as two lookup tables.
struct Gpt2ByteMap {
  std::array<uint32_t, 256> to_cpt{};
  std::array<int16_t, 324> from_cpt{};  // every mapped code point is below U+0144
  Gpt2ByteMap() {
    from_cpt.fill(-1);
    uint32_t next_extra = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_cpt[b] = printable ? static_cast<uint32_t>(b) : next_extra++;
      from_cpt[to_cpt[b]] = static_cast<int16_t>(b);
    }
  }
};

const Gpt2ByteMap& gpt2_byte_map() {
  static const Gpt2ByteMap map;
  return map;
}

}  // namespace

uint16_t flags_of(uint32_t cpt) {
  if (cpt < 0x10000) return bmp_table().flags[cpt];
  if (cpt > kMaxCodePoint) return kFlagUndefined;
  const FlagRange* end = kFlagRanges + kFlagRangeCount;
  const FlagRange* it = std::upper_bound(
      kFlagRanges, end, cpt, [](uint32_t c, const FlagRange& r) { return c < r.start; });
  return (it - 1)->flags;
}

void decode_utf8(std::string_view text, std::vector<uint32_t>& out) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  auto cont = [&](size_t i) { return i < n && (s[i] & 0xC0) == 0x80; };
  size_t i = 0;
  while (i < n) {
    const uint8_t b = s[i];
    if (b < 0x80) {
      out.push_back(b);
      i += 1;
    } else if ((b & 0xE0) == 0xC0 && cont(i + 1)) {
      out.push_back((uint32_t(b & 0x1F) << 6) | (s[i + 1] & 0x3F));
      i += 2;
    } else if ((b & 0xF0) == 0xE0 && cont(i + 1) && cont(i + 2)) {
      out.push_back((uint32_t(b & 0x0F) << 12) | (uint32_t(s[i + 1] & 0x3F) << 6) |
                    (s[i + 2] & 0x3F));
      i += 3;
    } else if ((b & 0xF8) == 0xF0 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
      const uint32_t cpt = (uint32_t(b & 0x07) << 18) | (uint32_t(s[i + 1] & 0x3F) << 12) |
                           (uint32_t(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
      if (cpt <= kMaxCodePoint) {
        out.push_back(cpt);
        i += 4;
      } else {
        out.push_back(kReplacementChar);
        i += 1;
      }
    } else {
      out.push_back(kReplacementChar);
      i += 1;
    }
  }
}

void append_utf8(std::string& out, uint32_t cpt) {
  if (cpt < 0x80) {
    out.push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | ((cpt >> 18) & 0x07)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

uint32_t byte_to_gpt2_cpt(uint8_t byte) {
  return gpt2_byte_map().to_cpt[byte];
}

int gpt2_cpt_to_byte(uint32_t cpt) {
  const auto& map = gpt2_byte_map();
  return cpt < map.from_cpt.size() ? map.from_cpt[cpt] : -1;
}

}  // namespace straw::model::unicode
