// Tokenizer behaviour beyond the llama.cpp vectors: special tokens, BOS/EOG, detokenization,
// UTF-8 streaming, the generated Unicode table, the pre-tokenizers, validation and speed.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/tokenizer/pretokenize.h"
#include "model/tokenizer/tokenizer.h"
#include "model/tokenizer/unicode.h"
#include "straw/error.h"
#include "test_util.h"

namespace straw::model {
namespace {

namespace fs = std::filesystem;
using unicode::flags_of;

const Tokenizer& vocab_tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[name];
  if (!slot) {
    const fs::path p = test::testdata_dir() / "vocab" / ("ggml-vocab-" + name + ".gguf");
    slot = Tokenizer::from_gguf(*gguf::Reader::open(p.string()));
  }
  return *slot;
}

std::vector<std::string> split(PreTokenizer p, const std::string& text) {
  std::vector<uint32_t> cpts;
  unicode::decode_utf8(text, cpts);
  std::vector<uint32_t> lengths;
  pre_tokenize(p, cpts, lengths);
  std::vector<std::string> pieces;
  size_t pos = 0;
  for (const uint32_t len : lengths) {
    std::string s;
    for (size_t i = pos; i < pos + len; ++i) unicode::append_utf8(s, cpts[i]);
    pieces.push_back(s);
    pos += len;
  }
  EXPECT_EQ(pos, cpts.size());
  return pieces;
}

using Pieces = std::vector<std::string>;

// A byte-level BPE vocabulary over GPT-2 characters: every printable ASCII byte plus the given
// extra tokens (texts in GPT-2 characters, e.g. "Ġ" for a space).
VocabData tiny_bpe(const std::vector<std::string>& extra, const std::vector<std::string>& merges) {
  VocabData v;
  v.model = "gpt2";
  v.pre = "qwen2";
  for (int c = 0x21; c < 0x7F; ++c) v.tokens.push_back(std::string(1, static_cast<char>(c)));
  v.tokens.push_back("\xC4\xA0");  // Ġ, the space byte
  for (const auto& t : extra) v.tokens.push_back(t);
  v.merges = merges;
  return v;
}

int32_t id_of(const Tokenizer& t, const std::string& text) {
  const auto id = t.find_token(text);
  EXPECT_TRUE(id.has_value()) << "no token '" << text << "'";
  return id.value_or(-1);
}

// --- Unicode ---------------------------------------------------------------------------------

TEST(TokenizerUnicode, GeneratedTableSpotChecks) {
  using namespace unicode;
  EXPECT_EQ(flags_of('A'), kFlagLetter);
  EXPECT_EQ(flags_of(0x0663), kFlagNumber);  // ARABIC-INDIC DIGIT THREE
  EXPECT_EQ(flags_of(0x0301), kFlagMark);    // COMBINING ACUTE ACCENT
  EXPECT_EQ(flags_of(0x3000), kFlagSeparator | kFlagWhitespace);
  EXPECT_EQ(flags_of('\n'), kFlagControl | kFlagWhitespace);
  EXPECT_EQ(flags_of(0x85), kFlagControl | kFlagWhitespace);
  EXPECT_EQ(flags_of(0x1C), kFlagControl);  // not White_Space, unlike Python's isspace
  EXPECT_EQ(flags_of(' '), kFlagSeparator | kFlagWhitespace);
  EXPECT_EQ(flags_of('!'), kFlagPunctuation);
  EXPECT_EQ(flags_of('$'), kFlagSymbol);
  EXPECT_EQ(flags_of('7'), kFlagNumber);
  EXPECT_EQ(flags_of(0x0378), kFlagUndefined);
  EXPECT_EQ(flags_of(0xE000), kFlagControl);  // private use
  EXPECT_EQ(flags_of(0xAC01), kFlagLetter);   // inside the Hangul syllables range
  EXPECT_EQ(flags_of(0x1F600), kFlagSymbol);  // 😀
  EXPECT_EQ(flags_of(0x20001), kFlagLetter);  // CJK extension B range
  EXPECT_EQ(flags_of(0x10FFFF), kFlagUndefined);
  EXPECT_EQ(flags_of(0x110000), kFlagUndefined);
}

TEST(TokenizerUnicode, DecodeLikeLlamaCpp) {
  std::vector<uint32_t> c;
  unicode::decode_utf8("a\xC3\xA9\xF0\x9F\x98\x80", c);
  EXPECT_EQ(c, (std::vector<uint32_t>{'a', 0xE9, 0x1F600}));
  c.clear();
  // Stray continuation byte, truncated sequence, byte 0xFF: one U+FFFD per bad byte.
  unicode::decode_utf8(
      "\x80"
      "a\xE6\x97"
      "b\xFF",
      c);
  EXPECT_EQ(c, (std::vector<uint32_t>{0xFFFD, 'a', 0xFFFD, 0xFFFD, 'b', 0xFFFD}));
  c.clear();
  unicode::decode_utf8("\xC0\x80", c);  // overlong NUL is accepted, as llama.cpp does
  EXPECT_EQ(c, (std::vector<uint32_t>{0}));
}

TEST(TokenizerUnicode, Gpt2ByteMapping) {
  EXPECT_EQ(unicode::byte_to_gpt2_cpt(' '), 0x120u);
  EXPECT_EQ(unicode::byte_to_gpt2_cpt('\n'), 0x10Au);
  EXPECT_EQ(unicode::byte_to_gpt2_cpt('A'), uint32_t('A'));
  EXPECT_EQ(unicode::byte_to_gpt2_cpt(0xAD), 0x143u);
  for (int b = 0; b < 256; ++b)
    EXPECT_EQ(unicode::gpt2_cpt_to_byte(unicode::byte_to_gpt2_cpt(b)), b);
  EXPECT_EQ(unicode::gpt2_cpt_to_byte(0x144), -1);
}

// --- pre-tokenizers ---------------------------------------------------------------------------

TEST(TokenizerPreTokenize, WhitespaceBacksOffBeforeText) {
  EXPECT_EQ(split(PreTokenizer::kQwen2, "Hello   world  "),
            (Pieces{"Hello", "  ", " world", "  "}));
  EXPECT_EQ(split(PreTokenizer::kLlama3, "a \n\n b"), (Pieces{"a", " \n\n", " b"}));
  EXPECT_EQ(split(PreTokenizer::kGpt2, "a  b"), (Pieces{"a", " ", " b"}));
  EXPECT_EQ(split(PreTokenizer::kQwen2, "\tx"), (Pieces{"\tx"}));  // [^\r\n\p{L}\p{N}]?\p{L}+
  EXPECT_EQ(split(PreTokenizer::kGpt2, "\tx"), (Pieces{"\t", "x"}));
}

TEST(TokenizerPreTokenize, ContractionsAndDigits) {
  EXPECT_EQ(split(PreTokenizer::kLlama3, "DON'T we'll"), (Pieces{"DON", "'T", " we", "'ll"}));
  EXPECT_EQ(split(PreTokenizer::kGpt2, "DON'T we'll"), (Pieces{"DON", "'", "T", " we", "'ll"}));
  EXPECT_EQ(split(PreTokenizer::kLlama3, "12345"), (Pieces{"123", "45"}));
  EXPECT_EQ(split(PreTokenizer::kQwen2, "123"), (Pieces{"1", "2", "3"}));
  EXPECT_EQ(split(PreTokenizer::kGpt2, "x 12345"), (Pieces{"x", " 12345"}));
  EXPECT_EQ(split(PreTokenizer::kLlama3, "(a)!!\n\nb"), (Pieces{"(a", ")!!\n\n", "b"}));
}

TEST(TokenizerPreTokenize, MarksJoinLettersOnlyForQwen35) {
  const std::string e_acute = "e\xCC\x81";  // e + U+0301
  EXPECT_EQ(split(PreTokenizer::kQwen35, "caf" + e_acute), (Pieces{"caf" + e_acute}));
  EXPECT_EQ(split(PreTokenizer::kQwen2, "caf" + e_acute), (Pieces{"cafe", "\xCC\x81"}));
}

TEST(TokenizerPreTokenize, DefaultRunsFourPasses) {
  EXPECT_EQ(split(PreTokenizer::kDefault, "a+b=12345"), (Pieces{"a", "+", "b", "=", "123", "45"}));
  EXPECT_EQ(split(PreTokenizer::kDefault, "x,y"), (Pieces{"x", ",", "y"}));
}

TEST(TokenizerPreTokenize, NamesAndErrors) {
  EXPECT_EQ(pre_tokenizer_from_name(""), PreTokenizer::kDefault);
  EXPECT_EQ(pre_tokenizer_from_name("llama3"), PreTokenizer::kLlama3);
  EXPECT_EQ(pre_tokenizer_from_name("llama-v3"), PreTokenizer::kLlama3);
  EXPECT_EQ(pre_tokenizer_from_name("gpt-2"), PreTokenizer::kGpt2);
  EXPECT_TRUE(pre_tokenizer_spec("falcon3").llama3_rules);
  EXPECT_EQ(pre_tokenizer_spec("deepseek-r1-qwen").pre, PreTokenizer::kQwen2);
  EXPECT_FALSE(pre_tokenizer_spec("deepseek-r1-qwen").llama3_rules);
  try {
    pre_tokenizer_from_name("deepseek-coder");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("deepseek-coder"), std::string::npos) << msg;
    EXPECT_NE(msg.find("qwen2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("llama-bpe"), std::string::npos) << msg;
  }
}

// --- synthetic vocabularies -------------------------------------------------------------------

TEST(TokenizerBpe, LowestRankFirstTiesLeftmost) {
  // "aaa": both pairs have rank 0, the left one merges; "abc": "b c" (rank 1) beats "a b" (2).
  const Tokenizer t(tiny_bpe({"aa", "bc", "ab", "abc"}, {"a a", "b c", "a b", "a bc"}));
  EXPECT_EQ(t.tokenize("aaa", false, false), (std::vector<int32_t>{id_of(t, "aa"), id_of(t, "a")}));
  EXPECT_EQ(t.tokenize("abc", false, false), (std::vector<int32_t>{id_of(t, "abc")}));
}

TEST(TokenizerBpe, UnknownSymbolsFallBackToSingleByteTokens) {
  // "é" is C3 A9 -> GPT-2 characters "Ã©"; neither is a token, and the one-byte lookups of their
  // UTF-8 bytes find nothing, so the character disappears (as in llama.cpp); "x" stays.
  const Tokenizer t(tiny_bpe({}, {}));
  EXPECT_EQ(t.tokenize("x\xC3\xA9", false, false), (std::vector<int32_t>{id_of(t, "x")}));
}

TEST(TokenizerBpe, MergeResultNeedNotBeAToken) {
  // "b c" makes "bc", which is no token but merges on with "a": "a bc" -> "abc".
  const Tokenizer t(tiny_bpe({"abc"}, {"b c", "a bc"}));
  EXPECT_EQ(t.tokenize("abc", false, false), (std::vector<int32_t>{id_of(t, "abc")}));
  // "bc" alone stays unmerged into a token: its bytes come out one by one.
  EXPECT_EQ(t.tokenize("bc", false, false), (std::vector<int32_t>{id_of(t, "b"), id_of(t, "c")}));
}

TEST(TokenizerBpe, IgnoreMergesEmitsWholePieceTokens) {
  VocabData v = tiny_bpe({"xyz"}, {});
  v.pre = "llama-bpe";
  v.add_bos = false;
  const Tokenizer llama3(v);
  EXPECT_EQ(llama3.tokenize("xyz", false, false), (std::vector<int32_t>{id_of(llama3, "xyz")}));
  const Tokenizer qwen(tiny_bpe({"xyz"}, {}));
  EXPECT_EQ(qwen.tokenize("xyz", false, false).size(), 3u);
}

TEST(TokenizerBpe, UserDefinedTokensAreAlwaysSplitOut) {
  VocabData v = tiny_bpe({"<tool>", "<ctl>"}, {});
  v.token_types.assign(v.tokens.size(), 1);
  v.token_types[v.tokens.size() - 2] = 4;  // USER_DEFINED
  v.token_types[v.tokens.size() - 1] = 3;  // CONTROL
  const Tokenizer t(v);
  const int32_t tool = id_of(t, "<tool>");
  const int32_t ctl = id_of(t, "<ctl>");
  EXPECT_EQ(t.tokenize("a<tool>", false, false), (std::vector<int32_t>{id_of(t, "a"), tool}));
  EXPECT_EQ(t.tokenize("<ctl>", false, false).size(), 5u);
  EXPECT_EQ(t.tokenize("<ctl>", false, true), (std::vector<int32_t>{ctl}));
  EXPECT_EQ(t.token_to_piece(tool, false), "<tool>");
  EXPECT_EQ(t.token_to_piece(ctl, false), "");
  EXPECT_EQ(t.token_to_piece(ctl, true), "<ctl>");
}

TEST(TokenizerSpm, HighestScoreMergesFirst) {
  VocabData v;
  v.model = "llama";
  v.tokens = {"<unk>",
              "<s>",
              "</s>",
              "\xE2\x96\x81",
              "a",
              "b",
              "c",
              "ab",
              "bc",
              "\xE2\x96\x81"
              "a"};
  v.token_types = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1};
  v.scores = {0, 0, 0, -1, -1, -1, -1, -3, -2, -5};
  const Tokenizer t(v);
  // "▁abc": candidates ▁a (-5), ab (-3), bc (-2): bc merges first, then ▁a.
  EXPECT_EQ(t.tokenize("abc", true, false), (std::vector<int32_t>{1, 9, 8}));
  // No byte tokens and no one-byte "d": the unknown token stands in.
  EXPECT_EQ(t.tokenize("d", false, false), (std::vector<int32_t>{3, 0}));
  EXPECT_EQ(t.detokenize(t.tokenize("abc", false, false), false), "abc");
}

TEST(TokenizerValidation, RejectsInconsistentData) {
  auto expect_error = [](VocabData v, const std::string& needle) {
    try {
      Tokenizer t(std::move(v));
      ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  VocabData v = tiny_bpe({}, {});
  v.model = "bert";
  expect_error(v, "bert");
  v = tiny_bpe({}, {});
  v.pre = "tekken";
  expect_error(v, "tekken");
  v = tiny_bpe({"a"}, {});
  expect_error(v, "duplicate");
  v = tiny_bpe({}, {"ab"});
  expect_error(v, "merge 0");
  v = tiny_bpe({}, {});
  v.token_types = {1, 2};
  expect_error(v, "token_type");
  v = tiny_bpe({}, {});
  v.eos = 100000;
  expect_error(v, "EOS");
  v = tiny_bpe({}, {});
  v.add_eos = true;  // the BPE default EOS (11) exists here, so this is fine
  EXPECT_NO_THROW(Tokenizer{v});
}

TEST(TokenizerStream, HoldsBackIncompleteSequences) {
  Utf8Stream s;
  EXPECT_EQ(s.push("ab"), "ab");
  EXPECT_EQ(s.push("c\xC3"), "c");
  EXPECT_EQ(s.push("\xA9!"), "\xC3\xA9!");
  EXPECT_EQ(s.push("\xF0\x9F"), "");
  EXPECT_EQ(s.push("\x98"), "");
  EXPECT_EQ(s.push("\x80"), "\xF0\x9F\x98\x80");
  EXPECT_EQ(s.push("\xFF"
                   "x"),
            "\xFF"
            "x");  // bytes that start nothing pass through
  EXPECT_EQ(s.push("\xE6\x97"), "");
  EXPECT_EQ(s.flush(), "\xE6\x97");
  EXPECT_EQ(s.flush(), "");
}

// --- real vocabularies ------------------------------------------------------------------------

TEST(TokenizerSpecial, ParseSpecialControlsChatMarkers) {
  STRAW_REQUIRE_TESTDATA();
  const Tokenizer& t = vocab_tokenizer("qwen2");
  const std::string text = "<|im_start|>user\nhi<|im_end|>";
  const std::vector<int32_t> parsed = t.tokenize(text, false, true);
  ASSERT_GE(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), 151644);
  EXPECT_EQ(parsed.back(), 151645);
  const std::vector<int32_t> plain = t.tokenize(text, false, false);
  for (const int32_t id : plain) {
    EXPECT_NE(id, 151644);
    EXPECT_NE(id, 151645);
  }
  EXPECT_EQ(t.detokenize(plain, false), text);
  EXPECT_EQ(t.detokenize(parsed, true), text);
  EXPECT_EQ(t.detokenize(parsed, false), "user\nhi");
  EXPECT_EQ(t.token_to_piece(151644, true), "<|im_start|>");
  EXPECT_EQ(t.token_to_piece(151644, false), "");
  EXPECT_TRUE(t.is_control(151644));
  EXPECT_THROW(t.token_to_piece(t.n_vocab(), true), Error);
}

TEST(TokenizerSpecial, BosAndEndOfGeneration) {
  STRAW_REQUIRE_TESTDATA();
  const Tokenizer& qwen = vocab_tokenizer("qwen2");
  EXPECT_FALSE(qwen.add_bos());
  EXPECT_EQ(qwen.tokenize("Hello", true, false), qwen.tokenize("Hello", false, false));
  EXPECT_TRUE(qwen.is_eog(151645));  // <|im_end|>
  EXPECT_TRUE(qwen.is_eog(151643));  // <|endoftext|>, also EOS
  EXPECT_FALSE(qwen.is_eog(151644));
  EXPECT_EQ(qwen.eos(), 151643);

  const Tokenizer& llama = vocab_tokenizer("llama-bpe");
  EXPECT_TRUE(llama.add_bos());
  const std::vector<int32_t> ids = llama.tokenize("Hello", true, false);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0], 128000);
  EXPECT_TRUE(llama.is_eog(128009));  // <|eot_id|>
  EXPECT_TRUE(llama.is_eog(128001));  // <|end_of_text|>
  EXPECT_FALSE(llama.is_eog(128000));
  EXPECT_EQ(llama.detokenize(ids, false), "Hello");
  EXPECT_EQ(llama.detokenize(ids, true), "<|begin_of_text|>Hello");

  const Tokenizer& spm = vocab_tokenizer("llama-spm");
  EXPECT_TRUE(spm.is_spm());
  const std::vector<int32_t> s = spm.tokenize("Hello world", true, false);
  ASSERT_GE(s.size(), 2u);
  EXPECT_EQ(s[0], 1);
  EXPECT_TRUE(spm.is_eog(2));
  EXPECT_EQ(spm.detokenize(std::vector<int32_t>(s.begin() + 1, s.end()), false), "Hello world");
  // As in llama.cpp, the leading-space rule applies to the first token, here the BOS.
  EXPECT_EQ(spm.detokenize(s, false), " Hello world");
  // After a special token SentencePiece starts a new word: the space prefix comes back.
  const std::vector<int32_t> two = spm.tokenize("a</s>b", false, true);
  EXPECT_EQ(two, (std::vector<int32_t>{spm.tokenize("a", false, false)[0], 2,
                                       spm.tokenize("b", false, false)[0]}));
}

TEST(TokenizerSpecial, InvalidUtf8BecomesReplacementCharacter) {
  STRAW_REQUIRE_TESTDATA();
  const Tokenizer& t = vocab_tokenizer("qwen2");
  EXPECT_EQ(t.detokenize(t.tokenize("a\xFF"
                                    "b",
                                    false, false),
                         false),
            "a\xEF\xBF\xBD"
            "b");
}

TEST(TokenizerSpeed, LargeVocabularyAndMegabyteOfText) {
  STRAW_REQUIRE_TESTDATA();
  const fs::path p = test::testdata_dir() / "vocab" / "ggml-vocab-qwen2.gguf";
  const auto reader = gguf::Reader::open(p.string());
  VocabData v = read_vocab(*reader);
  const auto t0 = std::chrono::steady_clock::now();
  const Tokenizer t(std::move(v));
  const auto t1 = std::chrono::steady_clock::now();

  const std::string unit =
      "The quick brown fox jumps over the lazy dog. Numbers 3.14159 and 2026-11-26; "
      "caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80\n"
      "    def f(x):\n        return x ** 2  # comment\n";
  std::string text;
  while (text.size() < (1u << 20)) text += unit;
  const auto t2 = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = t.tokenize(text, false, false);
  const auto t3 = std::chrono::steady_clock::now();
  EXPECT_EQ(t.detokenize(ids, false), text);

  const auto ms = [](auto a, auto b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  RecordProperty("construct_ms", std::to_string(ms(t0, t1)));
  RecordProperty("tokenize_1mb_ms", std::to_string(ms(t2, t3)));
  std::printf("qwen2 vocabulary: construct %.0f ms, tokenize %zu bytes -> %zu tokens in %.0f ms\n",
              ms(t0, t1), text.size(), ids.size(), ms(t2, t3));
  // Generous bounds so that sanitizer and debug builds pass; Release is far below them.
  EXPECT_LT(ms(t0, t1), 20000.0);
  EXPECT_LT(ms(t2, t3), 20000.0);
}

}  // namespace
}  // namespace straw::model
