// Byte-level BPE pre-tokenizers: split text (as code points) into the pieces BPE merges within.
// Each is a hand-written matcher that reproduces what llama.cpp's splitter for the same
// tokenizer.ggml.pre value produces, including its departures from the textbook regexes (for
// example, a space before an unassigned code point is a piece of its own).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace straw::model {

enum class PreTokenizer {
  // llama.cpp's fallback for "default" or a missing key: four passes, punctuation runs, then the
  // GPT-2 regex, then \p{N}+ runs, then groups of three ASCII digits.
  kDefault,
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
  // \s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // As kLlama3 with single digits: \p{N} instead of \p{N}{1,3}.
  kQwen2,
  // As kQwen2 with combining marks in letter runs: [\p{L}\p{M}]+ and [^\s\p{L}\p{M}\p{N}]+.
  kQwen35,
};

// What a tokenizer.ggml.pre value selects: the splitter, and whether llama.cpp also turns on
// ignore_merges (a piece that is itself a token is emitted whole) and add_bos for it, which it
// does for the Llama 3 family of names.
struct PreTokenizerSpec {
  PreTokenizer pre;
  bool llama3_rules;
};

// The spec for a tokenizer.ggml.pre value ("" means "default"); throws straw::Error naming the
// supported values for any other.
PreTokenizerSpec pre_tokenizer_spec(std::string_view name);
PreTokenizer pre_tokenizer_from_name(std::string_view name);
// The names pre_tokenizer_from_name accepts, comma-separated (for messages).
std::string supported_pre_tokenizer_names();

// Splits `cpts` into consecutive non-empty pieces covering all of it and appends their lengths
// (in code points) to `lengths`.
void pre_tokenize(PreTokenizer p, std::span<const uint32_t> cpts, std::vector<uint32_t>& lengths);

}  // namespace straw::model
