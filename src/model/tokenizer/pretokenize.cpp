#include "model/tokenizer/pretokenize.h"

#include <algorithm>
#include <array>

#include "model/tokenizer/unicode.h"
#include "util/str.h"

namespace straw::model {
namespace {

using namespace unicode;

// The accepted tokenizer.ggml.pre values: llama.cpp's names for these four splitters (aliases
// included where llama.cpp treats them identically for tokenizing).
struct NamedPre {
  std::string_view name;
  PreTokenizerSpec spec;
};
constexpr std::array<NamedPre, 16> kNames = {{
    {"default", {PreTokenizer::kDefault, false}},
    {"gpt2", {PreTokenizer::kGpt2, false}},
    {"gpt-2", {PreTokenizer::kGpt2, false}},
    {"phi-2", {PreTokenizer::kGpt2, false}},
    {"mpt", {PreTokenizer::kGpt2, false}},
    {"olmo", {PreTokenizer::kGpt2, false}},
    {"llama-bpe", {PreTokenizer::kLlama3, true}},
    {"llama3", {PreTokenizer::kLlama3, true}},
    {"llama-v3", {PreTokenizer::kLlama3, true}},
    {"falcon3", {PreTokenizer::kLlama3, true}},
    {"pixtral", {PreTokenizer::kLlama3, true}},
    {"qwen2", {PreTokenizer::kQwen2, false}},
    {"deepseek-r1-qwen", {PreTokenizer::kQwen2, false}},
    {"megrez", {PreTokenizer::kQwen2, false}},
    {"stablelm2", {PreTokenizer::kQwen2, false}},
    {"qwen35", {PreTokenizer::kQwen35, false}},
}};

constexpr uint32_t kOutside = 0xFFFFFFFF;

// One range of code points with their flags. Positions past the end read as kOutside with no
// flags at all, which is how llama.cpp's matchers see the edge of a piece (an in-range code
// point always has a category flag, even when it is unassigned).
struct Scan {
  const uint32_t* cpt;
  const uint16_t* flag;
  size_t n;
  uint32_t c(size_t p) const { return p < n ? cpt[p] : kOutside; }
  uint16_t f(size_t p) const { return p < n ? flag[p] : 0; }
  Scan sub(size_t begin, size_t len) const { return {cpt + begin, flag + begin, len}; }
};

uint32_t ascii_lower(uint32_t c) {
  return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

// Length of the contraction ('s 't 'm 'd 're 've 'll) at `pos`, or 0.
size_t contraction_len(const Scan& s, size_t pos, bool any_case) {
  if (s.c(pos) != '\'' || pos + 1 >= s.n) return 0;
  const uint32_t a = any_case ? ascii_lower(s.c(pos + 1)) : s.c(pos + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (pos + 2 >= s.n) return 0;
  const uint32_t b = any_case ? ascii_lower(s.c(pos + 2)) : s.c(pos + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// Length of the whitespace run at `pos` for \s+(?!\S)|\s+ : a run followed by more text gives
// back its last character (which then prefixes the next piece); a run at the end is whole.
size_t whitespace_piece(const Scan& s, size_t pos) {
  size_t k = 0;
  while (s.f(pos + k) & kFlagWhitespace) ++k;
  if (k > 1 && pos + k < s.n) return k - 1;
  return k > 0 ? k : 1;
}

void split_gpt2(const Scan& s, std::vector<uint32_t>& out) {
  size_t pos = 0;
  while (pos < s.n) {
    const size_t start = pos;
    const uint32_t c = s.c(pos);
    if (const size_t k = contraction_len(s, pos, false)) {
      out.push_back(static_cast<uint32_t>(k));
      pos += k;
      continue;
    }
    // ' ?' before letters, numbers or other non-space characters.
    const uint16_t f2 = c == ' ' ? s.f(pos + 1) : s.f(pos);
    if (f2 & (kFlagLetter | kFlagNumber)) {
      const uint16_t cls = f2 & kFlagLetter ? kFlagLetter : kFlagNumber;
      pos += c == ' ';
      while (s.f(pos) & cls) ++pos;
    } else if (f2 != 0 && !(f2 & (kFlagWhitespace | kFlagLetter | kFlagNumber))) {
      pos += c == ' ';
      while (s.f(pos) != 0 && !(s.f(pos) & (kFlagWhitespace | kFlagLetter | kFlagNumber))) ++pos;
    } else {
      pos += whitespace_piece(s, pos);
    }
    out.push_back(static_cast<uint32_t>(pos - start));
  }
}

// The Llama 3 / Qwen2 / Qwen3.5 family. `max_digits` is 3 (Llama 3) or 1 (Qwen); `marks` adds
// \p{M} to the letter runs (Qwen3.5).
void split_llama3_family(const Scan& s, size_t max_digits, bool marks, std::vector<uint32_t>& out) {
  const uint16_t letter = kFlagLetter | (marks ? kFlagMark : 0);
  const uint16_t not_symbol = kFlagWhitespace | kFlagNumber | letter;
  size_t pos = 0;
  while (pos < s.n) {
    const size_t start = pos;
    const uint32_t c = s.c(pos);
    const uint16_t f = s.f(pos);
    if (const size_t k = contraction_len(s, pos, true)) {
      out.push_back(static_cast<uint32_t>(k));
      pos += k;
      continue;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+ : any one character but CR, LF or a number may lead a letter run.
    if (c != '\r' && c != '\n' && !(f & kFlagNumber) && ((f & letter) || (s.f(pos + 1) & letter))) {
      ++pos;
      while (s.f(pos) & letter) ++pos;
      out.push_back(static_cast<uint32_t>(pos - start));
      continue;
    }
    // \p{N}{1,max_digits}: a longer run of numbers becomes several pieces.
    if (f & kFlagNumber) {
      size_t run = 0;
      while (s.f(pos + run) & kFlagNumber) ++run;
      for (size_t done = 0; done < run; done += max_digits) {
        out.push_back(static_cast<uint32_t>(std::min(max_digits, run - done)));
      }
      pos += run;
      continue;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    const uint16_t f2 = c == ' ' ? s.f(pos + 1) : f;
    if (!(f2 & not_symbol)) {
      pos += c == ' ';
      while (s.f(pos) != 0 && !(s.f(pos) & not_symbol)) ++pos;
      while (s.c(pos) == '\r' || s.c(pos) == '\n') ++pos;
      out.push_back(static_cast<uint32_t>(pos - start));
      continue;
    }
    // \s*[\r\n]+ takes a whitespace run up to its last CR or LF; otherwise \s+(?!\S)|\s+.
    size_t k = 0;
    size_t end_after_newline = 0;
    while (s.f(pos + k) & kFlagWhitespace) {
      if (s.c(pos + k) == '\r' || s.c(pos + k) == '\n') end_after_newline = k + 1;
      ++k;
    }
    pos += end_after_newline > 0 ? end_after_newline : whitespace_piece(s, pos);
    out.push_back(static_cast<uint32_t>(pos - start));
  }
}

// Splits each piece of `in` (lengths, covering `s`) into maximal runs of characters that do and
// do not satisfy `is_member`, as a regex "[class]+" applied with the unmatched gaps kept.
template <class Member>
void split_runs(const Scan& s, const std::vector<uint32_t>& in, Member is_member,
                std::vector<uint32_t>& out) {
  size_t base = 0;
  for (const uint32_t len : in) {
    size_t pos = base;
    const size_t end = base + len;
    while (pos < end) {
      const bool member = is_member(s.c(pos), s.f(pos));
      size_t next = pos + 1;
      while (next < end && is_member(s.c(next), s.f(next)) == member) ++next;
      out.push_back(static_cast<uint32_t>(next - pos));
      pos = next;
    }
    base = end;
  }
}

bool is_ascii_digit(uint32_t c) {
  return c >= '0' && c <= '9';
}

// llama.cpp's "default" splitter: punctuation runs, the GPT-2 regex within each piece, runs of
// numbers, then "[0-9][0-9][0-9]" matched leftmost-first with the rest of each piece kept.
void split_default(const Scan& s, std::vector<uint32_t>& out) {
  std::vector<uint32_t> a;
  split_runs(
      s, {static_cast<uint32_t>(s.n)},
      [](uint32_t c, uint16_t f) {
        return (f & kFlagPunctuation) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' ||
               c == '^' || c == '~' || c == '|';
      },
      a);
  std::vector<uint32_t> b;
  size_t base = 0;
  for (const uint32_t len : a) {
    split_gpt2(s.sub(base, len), b);
    base += len;
  }
  a.clear();
  split_runs(
      s, b, [](uint32_t, uint16_t f) { return (f & kFlagNumber) != 0; }, a);
  base = 0;
  for (const uint32_t len : a) {
    size_t gap_start = base;
    size_t pos = base;
    const size_t end = base + len;
    while (pos + 3 <= end) {
      if (is_ascii_digit(s.c(pos)) && is_ascii_digit(s.c(pos + 1)) &&
          is_ascii_digit(s.c(pos + 2))) {
        if (pos > gap_start) out.push_back(static_cast<uint32_t>(pos - gap_start));
        out.push_back(3);
        pos += 3;
        gap_start = pos;
      } else {
        ++pos;
      }
    }
    if (end > gap_start) out.push_back(static_cast<uint32_t>(end - gap_start));
    base = end;
  }
}

}  // namespace

PreTokenizerSpec pre_tokenizer_spec(std::string_view name) {
  if (name.empty()) return {PreTokenizer::kDefault, false};
  for (const auto& n : kNames) {
    if (n.name == name) return n.spec;
  }
  fail("unsupported BPE pre-tokenizer '", name, "' (tokenizer.ggml.pre); straw supports ",
       supported_pre_tokenizer_names());
}

PreTokenizer pre_tokenizer_from_name(std::string_view name) {
  return pre_tokenizer_spec(name).pre;
}

std::string supported_pre_tokenizer_names() {
  std::string s;
  for (const auto& n : kNames) {
    if (!s.empty()) s += ", ";
    s += n.name;
  }
  return s;
}

void pre_tokenize(PreTokenizer p, std::span<const uint32_t> cpts, std::vector<uint32_t>& lengths) {
  if (cpts.empty()) return;
  std::vector<uint16_t> flags(cpts.size());
  for (size_t i = 0; i < cpts.size(); ++i) flags[i] = flags_of(cpts[i]);
  const Scan s{cpts.data(), flags.data(), cpts.size()};
  switch (p) {
    case PreTokenizer::kDefault:
      split_default(s, lengths);
      break;
    case PreTokenizer::kGpt2:
      split_gpt2(s, lengths);
      break;
    case PreTokenizer::kLlama3:
      split_llama3_family(s, 3, false, lengths);
      break;
    case PreTokenizer::kQwen2:
      split_llama3_family(s, 1, false, lengths);
      break;
    case PreTokenizer::kQwen35:
      split_llama3_family(s, 1, true, lengths);
      break;
  }
}

}  // namespace straw::model
