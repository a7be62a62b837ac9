// Code point classification and UTF-8 helpers for the tokenizers, with llama.cpp's exact
// conventions (its tokenizer test vectors depend on them):
//  - categories come from a table generated from the Unicode Character Database
//    (unicode_tables.cpp, scripts/gen_unicode_tables.py); \s is the White_Space property;
//  - invalid UTF-8 decodes to U+FFFD one byte at a time, while overlong forms and surrogates are
//    accepted as they are (llama.cpp does no further validation);
//  - GPT-2's bytes_to_unicode maps each byte to one printable code point for byte-level BPE.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace straw::model::unicode {

// Category flags of one code point: exactly one of the first eight (the general category's
// group), plus kFlagWhitespace for White_Space code points.
inline constexpr uint16_t kFlagUndefined = 0x0001;    // Cn: unassigned
inline constexpr uint16_t kFlagNumber = 0x0002;       // \p{N}
inline constexpr uint16_t kFlagLetter = 0x0004;       // \p{L}
inline constexpr uint16_t kFlagSeparator = 0x0008;    // \p{Z}
inline constexpr uint16_t kFlagMark = 0x0010;         // \p{M}
inline constexpr uint16_t kFlagPunctuation = 0x0020;  // \p{P}
inline constexpr uint16_t kFlagSymbol = 0x0040;       // \p{S}
inline constexpr uint16_t kFlagControl = 0x0080;      // \p{C} other than Cn
inline constexpr uint16_t kFlagWhitespace = 0x0100;   // \s (White_Space)

// One entry of the generated table: `flags` hold from `start` up to the next entry's start.
struct FlagRange {
  uint32_t start;
  uint16_t flags;
};
extern const FlagRange kFlagRanges[];
extern const size_t kFlagRangeCount;

inline constexpr uint32_t kMaxCodePoint = 0x10FFFF;
inline constexpr uint32_t kReplacementChar = 0xFFFD;

// The flags of `cpt`; code points past U+10FFFF are kFlagUndefined.
uint16_t flags_of(uint32_t cpt);

// Bytes of the UTF-8 sequence that starts with `lead`, from its high nibble alone: 1 for ASCII
// and for stray continuation bytes, 2 for 0xC0..0xDF, 3 for 0xE0..0xEF, 4 for 0xF0..0xFF.
inline size_t utf8_seq_len(uint8_t lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

// Decodes `text` into code points (appended to `out`), replacing each byte that does not start a
// well-formed sequence with U+FFFD. Sequences decoding past U+10FFFF are treated as invalid.
void decode_utf8(std::string_view text, std::vector<uint32_t>& out);

// Appends the UTF-8 encoding of `cpt` (at most U+10FFFF) to `out`.
void append_utf8(std::string& out, uint32_t cpt);

// GPT-2 bytes_to_unicode: printable bytes 0x21..0x7E, 0xA1..0xAC and 0xAE..0xFF map to the same
// code point; the remaining 68 bytes map to U+0100.. in byte order (space -> U+0120 'Ġ').
uint32_t byte_to_gpt2_cpt(uint8_t byte);
// The inverse: the byte that `cpt` stands for, or -1 when `cpt` is not in the mapping.
int gpt2_cpt_to_byte(uint32_t cpt);

}  // namespace straw::model::unicode
