#include "model/tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <utility>

#include "model/tokenizer/bpe.h"
#include "model/tokenizer/pretokenize.h"
#include "model/tokenizer/special_split.h"
#include "model/tokenizer/spm.h"
#include "model/tokenizer/unicode.h"
#include "model/tokenizer/vocab.h"
#include "util/str.h"

namespace straw::model {

using namespace detail;

namespace {

// llama.cpp token types (tokenizer.ggml.token_type) -> attributes.
uint16_t attr_from_type(int32_t type) {
  switch (type) {
    case 1:
      return kAttrNormal;
    case 2:
      return kAttrUnknown;
    case 3:
      return kAttrControl;
    case 4:
      return kAttrUserDefined;
    case 5:
      return kAttrUnused;
    case 6:
      return kAttrByte;
    default:
      return 0;  // 0 = undefined, and anything unknown
  }
}

// Token texts llama.cpp recognizes when the metadata does not name the token (its
// llama_vocab::impl::load). The first present one (lowest id here) becomes the id; every listed
// token that is present is made CONTROL.
constexpr std::array<std::string_view, 11> kEotTexts = {
    "<|eot_id|>",        "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|end_of_text|>",   "<EOT>",      "_<EOT>",  "[EOT]",         "<｜end▁of▁sentence｜>",
    "<end_of_utterance>"};
constexpr std::array<std::string_view, 1> kEomTexts = {"<|eom_id|>"};
// Fill-in-the-middle markers: all become CONTROL; pad, repo and file-separator also end
// generation.
constexpr std::array<std::string_view, 8> kFimPreTexts = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",    "<｜fim▁begin｜>",
    "<PRE>",          "▁<PRE>",       "<|code_prefix|>", "<|prefix|>"};
constexpr std::array<std::string_view, 8> kFimSufTexts = {
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",    "<｜fim▁hole｜>",
    "<SUF>",          "▁<SUF>",       "<|code_suffix|>", "<|suffix|>"};
constexpr std::array<std::string_view, 8> kFimMidTexts = {
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>",    "<｜fim▁end｜>",
    "<MID>",          "▁<MID>",       "<|code_middle|>", "<|middle|>"};
constexpr std::array<std::string_view, 5> kFimPadTexts = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>",
                                                          "<PAD>", "[PAD]"};
constexpr std::array<std::string_view, 5> kFimRepTexts = {"<|fim_repo|>", "<|repo_name|>",
                                                          "<fim-repo>", "<REPO>", "<reponame>"};
constexpr std::array<std::string_view, 1> kFimSepTexts = {"<|file_sep|>"};
// Texts that end generation whatever the metadata says.
constexpr std::array<std::string_view, 22> kEogTexts = {"<|eot_id|>",
                                                        "<|im_end|>",
                                                        "<|end|>",
                                                        "<|return|>",
                                                        "<|call|>",
                                                        "<|flush|>",
                                                        "<|calls|>",
                                                        "<end_of_turn>",
                                                        "<|endoftext|>",
                                                        "</s>",
                                                        "<|eom_id|>",
                                                        "<EOT>",
                                                        "_<EOT>",
                                                        "[EOT]",
                                                        "[EOS]",
                                                        "<|end_of_text|>",
                                                        "<end_of_utterance>",
                                                        "<eos>",
                                                        "<turn|>",
                                                        "<|tool_response>",
                                                        "<｜end▁of▁sentence｜>",
                                                        "[e~["};
// gpt-oss markers that llama.cpp always renders (USER_DEFINED).
constexpr std::array<std::string_view, 4> kAlwaysRenderedTexts = {"<|channel|>", "<|message|>",
                                                                  "<|start|>", "<|constrain|>"};

const char kSpaceMark[] = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// "<0xXX>" (or any text with two hex digits at offset 3) -> the byte, as llama.cpp's
// token_to_byte reads it.
char byte_of_byte_token(const std::string& text) {
  const std::string hex = text.size() > 3 ? text.substr(3, 2) : std::string();
  return static_cast<char>(std::strtol(hex.c_str(), nullptr, 16));
}

}  // namespace

struct Tokenizer::State {
  Vocab vocab;
  bool spm = false;
  PreTokenizer pre = PreTokenizer::kDefault;
  int32_t bos = -1, eos = -1, eot = -1, eom = -1, unk = -1;
  bool add_bos = false, add_eos = false, add_space_prefix = false;
  std::vector<bool> eog;
  // token_to_piece(id, special = true) of every token.
  std::vector<std::string> pieces;
  std::unique_ptr<SpecialSplitter> splitter;
  std::unique_ptr<BpeEncoder> bpe;
  std::unique_ptr<SpmEncoder> spm_encoder;

  // llama.cpp's special-token rules: end-of-turn and fill-in-the-middle tokens recognized by
  // text, the end-of-generation set, and the attribute fixes that go with them.
  void mark_special_tokens();
  std::string render_piece(int32_t id, std::vector<uint32_t>& cpts) const;
  void tokenize_bpe(std::string_view text, std::vector<int32_t>& out) const;
};

Tokenizer::Tokenizer(VocabData v) {
  auto s = std::make_unique<State>();
  if (v.model == "llama") {
    s->spm = true;
  } else if (v.model != "gpt2") {
    fail("unsupported tokenizer model '", v.model,
         "' (tokenizer.ggml.model); straw supports 'gpt2' (byte-level BPE) and 'llama' "
         "(SentencePiece)");
  }
  const size_t n = v.tokens.size();
  if (n == 0) fail("the vocabulary is empty (tokenizer.ggml.tokens has no entries)");
  if (n > size_t{INT32_MAX} / 2)
    fail("the vocabulary has ", n, " tokens, more than straw supports");
  if (!v.token_types.empty() && v.token_types.size() != n) {
    fail("tokenizer.ggml.token_type has ", v.token_types.size(), " entries for ", n,
         " tokens; the vocabulary is malformed, re-convert the model");
  }
  if (!v.scores.empty() && v.scores.size() != n) {
    fail("tokenizer.ggml.scores has ", v.scores.size(), " entries for ", n,
         " tokens; the vocabulary is malformed, re-convert the model");
  }

  Vocab& vocab = s->vocab;
  vocab.text = std::move(v.tokens);
  vocab.score = v.scores.empty() ? std::vector<float>(n, 0.0f) : std::move(v.scores);
  vocab.attr.resize(n);
  for (size_t i = 0; i < n; ++i) {
    // llama.cpp renames empty texts so that every token stays addressable.
    if (vocab.text[i].empty()) vocab.text[i] = str("[EMPTY_", i, "]");
    vocab.attr[i] = v.token_types.empty() ? kAttrNormal : attr_from_type(v.token_types[i]);
  }
  if (const int64_t dup = vocab.index.build(vocab.text); dup >= 0) {
    fail("duplicate token text '", vocab.text[dup], "' (ids ", vocab.find(vocab.text[dup]), " and ",
         dup, ") in tokenizer.ggml.tokens; the vocabulary is malformed, re-convert the model");
  }

  // Model-type defaults, then the metadata.
  bool ignore_merges = false;
  if (s->spm) {
    s->add_bos = true;
    s->add_space_prefix = true;
  } else {
    const PreTokenizerSpec spec = pre_tokenizer_spec(v.pre);
    s->pre = spec.pre;
    ignore_merges = spec.llama3_rules;
    s->add_bos = spec.llama3_rules;
  }
  if (v.add_bos) s->add_bos = *v.add_bos;
  if (v.add_eos) s->add_eos = *v.add_eos;
  if (v.add_space_prefix) s->add_space_prefix = *v.add_space_prefix;

  auto special_id = [&](int32_t given, int32_t fallback, const char* what) -> int32_t {
    if (given == -1) return fallback >= 0 && size_t(fallback) < n ? fallback : -1;
    if (given < 0 || size_t(given) >= n) {
      fail("the ", what, " token id ", given, " is outside the vocabulary of ", n, " tokens");
    }
    return given;
  };
  s->bos = special_id(v.bos, s->spm ? 1 : 11, "BOS");
  s->eos = special_id(v.eos, s->spm ? 2 : 11, "EOS");
  s->unk = special_id(v.unk, s->spm ? 0 : -1, "unknown");
  s->eot = special_id(v.eot, -1, "end-of-turn");
  s->eom = special_id(v.eom, -1, "end-of-message");
  special_id(v.pad, -1, "padding");  // only checked: nothing depends on it
  if (s->add_bos && s->bos < 0) {
    fail(
        "tokenizer.ggml.add_bos_token is true, but the vocabulary has no BOS token "
        "(tokenizer.ggml.bos_token_id)");
  }
  if (s->add_eos && s->eos < 0) {
    fail(
        "tokenizer.ggml.add_eos_token is true, but the vocabulary has no EOS token "
        "(tokenizer.ggml.eos_token_id)");
  }

  s->mark_special_tokens();

  // Special tokens are cut out of the input longest text first (ties by id).
  std::vector<SpecialSplitter::Special> specials;
  for (size_t i = 0; i < n; ++i) {
    const uint16_t attr = vocab.attr[i];
    if (attr & (kAttrControl | kAttrUserDefined | kAttrUnknown)) {
      specials.push_back(
          {static_cast<int32_t>(i), vocab.text[i], (attr & (kAttrControl | kAttrUnknown)) == 0});
    }
  }
  std::stable_sort(specials.begin(), specials.end(),
                   [](const auto& a, const auto& b) { return a.text.size() > b.text.size(); });
  s->splitter = std::make_unique<SpecialSplitter>(std::move(specials));

  s->pieces.resize(n);
  std::vector<uint32_t> cpts;
  for (size_t i = 0; i < n; ++i) s->pieces[i] = s->render_piece(static_cast<int32_t>(i), cpts);

  if (s->spm) {
    s->spm_encoder = std::make_unique<SpmEncoder>(vocab, s->unk);
  } else {
    s->bpe = std::make_unique<BpeEncoder>(vocab, v.merges, ignore_merges);
  }
  s_ = std::move(s);
}

Tokenizer::~Tokenizer() = default;

void Tokenizer::State::mark_special_tokens() {
  const size_t n = vocab.text.size();
  auto lowest_with_text = [&](std::span<const std::string_view> texts) -> int32_t {
    int32_t best = -1;
    for (const auto t : texts) {
      const int32_t id = vocab.find(t);
      if (id >= 0 && (best < 0 || id < best)) best = id;
    }
    return best;
  };
  auto make_control = [&](int32_t id) {
    if (id >= 0) vocab.attr[id] |= kAttrControl;
  };
  if (eot < 0) eot = lowest_with_text(kEotTexts);
  make_control(eot);
  if (eom < 0) eom = lowest_with_text(kEomTexts);
  make_control(eom);
  make_control(lowest_with_text(kFimPreTexts));
  make_control(lowest_with_text(kFimSufTexts));
  make_control(lowest_with_text(kFimMidTexts));
  eog.assign(n, false);
  for (const auto texts : {std::span<const std::string_view>(kFimPadTexts),
                           std::span<const std::string_view>(kFimRepTexts),
                           std::span<const std::string_view>(kFimSepTexts)}) {
    const int32_t id = lowest_with_text(texts);
    make_control(id);
    if (id >= 0) eog[id] = true;
  }
  for (const auto t : kEogTexts) {
    const int32_t id = vocab.find(t);
    make_control(id);
    if (id >= 0) eog[id] = true;
  }
  for (const auto t : kAlwaysRenderedTexts) {
    if (const int32_t id = vocab.find(t); id >= 0) vocab.attr[id] = kAttrUserDefined;
  }
  for (const int32_t id : {eos, eot, eom}) {
    if (id >= 0) eog[id] = true;
  }
  // Harmony-style vocabularies end turns with <|return|>/<|call|>; their <|end|> is ordinary.
  auto eog_with_text = [&](std::string_view t) {
    const int32_t id = vocab.find(t);
    return id >= 0 && eog[id] ? id : -1;
  };
  const int32_t end_id = eog_with_text("<|end|>");
  const bool has_call = eog_with_text("<|call|>") >= 0 || eog_with_text("<|calls|>") >= 0;
  if (end_id >= 0 && has_call &&
      (eog_with_text("<|return|>") >= 0 || eog_with_text("<|flush|>") >= 0)) {
    eog[end_id] = false;
    vocab.attr[end_id] = kAttrUserDefined;
  }
  // Gemma 4 uses </s> as an ordinary token next to <|tool_response>.
  if (const int32_t eos_text = eog_with_text("</s>");
      eos_text >= 0 && eog_with_text("<|tool_response>") >= 0) {
    eog[eos_text] = false;
    vocab.attr[eos_text] = kAttrNormal;
  }
}

// The piece of a token as llama.cpp's token_to_piece(special = true) renders it.
std::string Tokenizer::State::render_piece(int32_t id, std::vector<uint32_t>& cpts) const {
  const std::string& text = vocab.text[id];
  const uint16_t attr = vocab.attr[id];
  if (attr & (kAttrUnknown | kAttrControl | kAttrUserDefined)) return text;
  if (attr & kAttrNormal) {
    std::string out;
    if (spm) {
      // U+2581 -> space.
      for (size_t i = 0; i < text.size();) {
        if (text.compare(i, 3, kSpaceMark) == 0) {
          out.push_back(' ');
          i += 3;
        } else {
          out.push_back(text[i++]);
        }
      }
      return out;
    }
    // GPT-2 byte characters -> bytes; llama.cpp marks a character outside the mapping inline.
    cpts.clear();
    unicode::decode_utf8(text, cpts);
    for (const uint32_t c : cpts) {
      const int b = unicode::gpt2_cpt_to_byte(c);
      if (b >= 0) {
        out.push_back(static_cast<char>(b));
        continue;
      }
      std::string utf8;
      unicode::append_utf8(utf8, c);
      out += "[UNK_BYTE_0x";
      for (const char ch : utf8) {
        static const char kHex[] = "0123456789abcdef";
        out.push_back(kHex[uint8_t(ch) >> 4]);
        out.push_back(kHex[uint8_t(ch) & 15]);
      }
      out += text + "]";
    }
    return out;
  }
  if (attr & kAttrByte) return std::string(1, byte_of_byte_token(text));
  return {};  // unused and undefined tokens render as nothing
}

void Tokenizer::State::tokenize_bpe(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<uint32_t> cpts;
  cpts.reserve(text.size());
  unicode::decode_utf8(text, cpts);
  std::vector<uint32_t> lengths;
  pre_tokenize(pre, cpts, lengths);
  BpeEncoder::Scratch scratch;
  std::string piece;
  size_t pos = 0;
  for (const uint32_t len : lengths) {
    // The piece is re-encoded from code points, so invalid input bytes reach BPE as U+FFFD.
    piece.clear();
    for (size_t i = pos; i < pos + len; ++i) unicode::append_utf8(piece, cpts[i]);
    bpe->encode(piece, scratch, out);
    pos += len;
  }
}

std::vector<int32_t> Tokenizer::tokenize(std::string_view text, bool add_special,
                                         bool parse_special) const {
  const State& s = *s_;
  std::vector<Fragment> fragments;
  s.splitter->split(text, parse_special, fragments);
  std::vector<int32_t> out;
  if (add_special && s.add_bos) out.push_back(s.bos);
  if (s.spm) {
    SpmEncoder::Scratch scratch;
    std::string escaped;
    bool after_special = true;  // the start of the text counts as following a special token
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        out.push_back(f.token);
        after_special = true;
        continue;
      }
      escaped.clear();
      if (s.add_space_prefix && after_special) escaped += kSpaceMark;
      for (const char ch : text.substr(f.offset, f.length)) {
        if (ch == ' ') {
          escaped += kSpaceMark;
        } else {
          escaped.push_back(ch);
        }
      }
      s.spm_encoder->encode(escaped, scratch, out);
      after_special = false;
    }
  } else {
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        out.push_back(f.token);
      } else {
        s.tokenize_bpe(text.substr(f.offset, f.length), out);
      }
    }
  }
  if (add_special && s.add_eos) out.push_back(s.eos);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool special) const {
  if (id < 0 || id >= n_vocab()) {
    fail("token id ", id, " is outside the vocabulary of ", n_vocab(), " tokens");
  }
  if (!special && (s_->vocab.attr[id] & (kAttrControl | kAttrUnknown))) return {};
  return s_->pieces[id];
}

std::string Tokenizer::detokenize(std::span<const int32_t> ids, bool special) const {
  std::string out;
  bool strip_space = s_->add_space_prefix;
  for (const int32_t id : ids) {
    if (id < 0 || id >= n_vocab()) {
      fail("token id ", id, " is outside the vocabulary of ", n_vocab(), " tokens");
    }
    const bool hidden = !special && (s_->vocab.attr[id] & (kAttrControl | kAttrUnknown));
    std::string_view piece = hidden ? std::string_view() : std::string_view(s_->pieces[id]);
    if (strip_space && !piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
    strip_space = false;
    out += piece;
  }
  return out;
}

int32_t Tokenizer::n_vocab() const {
  return s_->vocab.size();
}
int32_t Tokenizer::bos() const {
  return s_->bos;
}
int32_t Tokenizer::eos() const {
  return s_->eos;
}
bool Tokenizer::add_bos() const {
  return s_->add_bos;
}
bool Tokenizer::add_eos() const {
  return s_->add_eos;
}
bool Tokenizer::is_spm() const {
  return s_->spm;
}

bool Tokenizer::is_eog(int32_t id) const {
  return id >= 0 && id < n_vocab() && s_->eog[static_cast<size_t>(id)];
}

bool Tokenizer::is_control(int32_t id) const {
  return id >= 0 && id < n_vocab() && (s_->vocab.attr[id] & kAttrControl);
}

const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= n_vocab()) {
    fail("token id ", id, " is outside the vocabulary of ", n_vocab(), " tokens");
  }
  return s_->vocab.text[id];
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  const int32_t id = s_->vocab.find(text);
  return id >= 0 ? std::optional<int32_t>(id) : std::nullopt;
}

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  // Find where the last (possibly incomplete) sequence starts: at most three continuation bytes
  // back from the end.
  const size_t size = pending_.size();
  size_t start = size;
  for (size_t back = 1; back <= 4 && back <= size; ++back) {
    const auto b = uint8_t(pending_[size - back]);
    if ((b & 0xC0) != 0x80) {
      start = size - back;
      break;
    }
  }
  size_t keep = 0;
  if (start < size) {
    const auto lead = uint8_t(pending_[start]);
    const size_t need = lead >= 0xC0 && lead < 0xF8 ? unicode::utf8_seq_len(lead) : 1;
    if (size - start < need) keep = size - start;
  }
  std::string out = pending_.substr(0, size - keep);
  pending_.erase(0, size - keep);
  return out;
}

std::string Utf8Stream::flush() {
  return std::exchange(pending_, std::string());
}

}  // namespace straw::model
