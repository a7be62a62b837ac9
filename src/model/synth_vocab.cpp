// The synthetic byte-level BPE vocabulary (model/synth.h: make_vocab).
//
// Layout of the token ids:
//   [0, 256)            the GPT-2 byte symbols, in the order GPT-2's vocabulary lists them: the
//                       188 printable bytes (which stand for themselves) by value, then the other
//                       68 bytes, which map to U+0100.. in byte order (space -> U+0120 "Ġ").
//   [256, n_text)       letter n-grams, shortest first; for each length L the plain words
//                       ("ab", merge "a b") then the space-prefixed ones ("Ġab", merge "Ġa b"),
//                       so every token is built by exactly one merge from two existing tokens,
//                       and the merges' ranks follow the ids.
//   [n_text, n_vocab)   the special tokens (CONTROL) and, for the real models' vocabulary sizes,
//                       what fills the real vocabularies after them: "[PADn]" (UNUSED, as
//                       llama.cpp's converter pads Qwen's) or Llama 3's reserved special tokens.
// With the real sizes the text part has the real models' length, so the special ids are the real
// ones (Qwen <|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645; Qwen3.5 the same three
// at 248044..248046; Llama 3 <|begin_of_text|> 128000 ... <|eot_id|> 128009).
#include <string>
#include <vector>

#include "model/synth.h"
#include "util/str.h"

namespace straw::model {

namespace {

constexpr int32_t kNormal = 1;
constexpr int32_t kControl = 3;
constexpr int32_t kUnused = 5;

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool printable_byte(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

// The 256 byte symbols in vocabulary order (see the layout above).
std::vector<std::string> byte_symbols() {
  std::vector<std::string> out;
  for (int b = 0; b < 256; ++b) {
    if (!printable_byte(b)) continue;
    std::string s;
    append_utf8(s, static_cast<uint32_t>(b));
    out.push_back(std::move(s));
  }
  for (uint32_t n = 0; out.size() < 256; ++n) {
    std::string s;
    append_utf8(s, 0x100 + n);
    out.push_back(std::move(s));
  }
  return out;
}

const char* const kSpace = "\xC4\xA0";  // U+0120, the GPT-2 symbol of the space byte

// Appends letter n-gram tokens and their merges until `tokens` holds n_text entries.
void add_ngrams(std::vector<std::string>& tokens, std::vector<std::string>& merges, size_t n_text) {
  auto add = [&](const std::string& left, const std::string& right) {
    if (tokens.size() >= n_text) return false;
    tokens.push_back(left + right);
    merges.push_back(left + " " + right);
    return true;
  };
  std::vector<std::string> level;  // the plain words of the current length
  for (char c = 'a'; c <= 'z'; ++c) level.emplace_back(1, c);
  for (const std::string& w : level)
    if (!add(kSpace, w)) return;
  while (tokens.size() < n_text) {
    std::vector<std::string> next;
    next.reserve(level.size() * 26);
    for (const std::string& p : level) {
      for (char c = 'a'; c <= 'z'; ++c) {
        if (!add(p, std::string(1, c))) return;
        next.push_back(p + c);
      }
    }
    for (const std::string& p : level)
      for (char c = 'a'; c <= 'z'; ++c)
        if (!add(kSpace + p, std::string(1, c))) return;
    level = std::move(next);
  }
}

constexpr const char* kChatML =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

constexpr const char* kLlama3Template =
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}";

}  // namespace

SynthVocab make_vocab(const ModelShape& s) {
  check_shape(s);
  SynthVocab v;
  const bool qwen = s.vocab == VocabStyle::Qwen || s.vocab == VocabStyle::Qwen35;
  // The real text-token counts, and the block of special ids after them.
  const int64_t real_text = s.vocab == VocabStyle::Qwen35 ? 248044 : qwen ? 151643 : 128000;
  const int64_t real_special_block = qwen ? 3 : 256;
  const std::vector<std::string> named =
      qwen ? std::vector<std::string>{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
           : std::vector<std::string>{"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                      "<|end_header_id|>", "<|eot_id|>"};
  const bool real_layout = s.n_vocab >= real_text + real_special_block;
  const int64_t n_text = real_layout ? real_text : s.n_vocab - static_cast<int64_t>(named.size());

  v.tokens = byte_symbols();
  v.tokens.reserve(static_cast<size_t>(s.n_vocab));
  v.merges.reserve(static_cast<size_t>(n_text));
  add_ngrams(v.tokens, v.merges, static_cast<size_t>(n_text));
  if (static_cast<int64_t>(v.tokens.size()) != n_text)
    fail("synthetic vocabulary: could not build ", n_text, " text tokens");
  v.token_types.assign(v.tokens.size(), kNormal);

  auto add_special = [&](const std::string& text, int32_t type) {
    v.tokens.push_back(text);
    v.token_types.push_back(type);
    return static_cast<int32_t>(v.tokens.size() - 1);
  };
  if (qwen) {
    v.pre = s.vocab == VocabStyle::Qwen35 ? "qwen35" : "qwen2";
    v.bos = add_special(named[0], kControl);
    add_special(named[1], kControl);
    v.eos = add_special(named[2], kControl);
    v.pad = v.bos;
    v.add_bos = false;
    v.chat_template = kChatML;
    while (static_cast<int64_t>(v.tokens.size()) < s.n_vocab)
      add_special(str("[PAD", v.tokens.size(), "]"), kUnused);
  } else {
    v.pre = "llama-bpe";
    v.add_bos = true;
    v.chat_template = kLlama3Template;
    if (real_layout) {
      // Llama 3's block: 0 begin, 1 end, 6 start_header, 7 end_header, 9 eot; the rest reserved.
      int reserved = 0;
      for (int k = 0; static_cast<int64_t>(v.tokens.size()) < s.n_vocab; ++k) {
        const int32_t id =
            k == 0   ? add_special(named[0], kControl)
            : k == 1 ? add_special(named[1], kControl)
            : k == 6 ? add_special(named[2], kControl)
            : k == 7 ? add_special(named[3], kControl)
            : k == 9 ? add_special(named[4], kControl)
                     : add_special(str("<|reserved_special_token_", reserved++, "|>"), kControl);
        if (k == 0) v.bos = id;
        if (k == 9) v.eos = id;
      }
    } else {
      v.bos = add_special(named[0], kControl);
      add_special(named[1], kControl);
      add_special(named[2], kControl);
      add_special(named[3], kControl);
      v.eos = add_special(named[4], kControl);
    }
  }
  return v;
}

}  // namespace straw::model
