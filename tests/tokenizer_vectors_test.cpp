// The tokenizers against llama.cpp's own outputs: its tokenizer test vectors
// (testdata/vocab/ggml-vocab-*.gguf.{inp,out}) and the prompt token ids of the golden files
// (testdata/golden/*.json, tokenized with add_special and parse_special).
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/tokenizer/tokenizer.h"
#include "model/tokenizer/unicode.h"
#include "test_util.h"

namespace straw::model {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot open " << p;
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Loaded once per process: the big vocabularies take a moment to index.
const Tokenizer& tokenizer_for(const fs::path& gguf) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[gguf.string()];
  if (!slot) {
    const auto reader = gguf::Reader::open(gguf.string());
    slot = Tokenizer::from_gguf(*reader);
  }
  return *slot;
}

// A text with control and non-ASCII bytes escaped, for failure messages.
std::string printable(const std::string& s) {
  std::string out;
  for (const char ch : s) {
    const auto b = static_cast<uint8_t>(ch);
    if (b >= 0x20 && b < 0x7F && b != '\\') {
      out.push_back(ch);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", b);
      out += buf;
    }
  }
  return out;
}

std::string ids_string(const std::vector<int32_t>& ids) {
  std::string out;
  for (const int32_t id : ids) {
    if (!out.empty()) out += ' ';
    out += std::to_string(id);
  }
  return out;
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

// NAME.gguf.inp: texts, each followed by "\n__ggml_vocab_test__\n"; NAME.gguf.out: one line of
// space-separated ids per text (stripped; empty: no tokens).
std::vector<Case> read_cases(const fs::path& gguf) {
  const std::string inp = read_file(gguf.string() + ".inp");
  const std::string outp = read_file(gguf.string() + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Case> cases;
  for (size_t pos = 0; pos < inp.size();) {
    const size_t end = inp.find(sep, pos);
    if (end == std::string::npos) break;
    cases.push_back({inp.substr(pos, end - pos), {}});
    pos = end + sep.size();
  }
  std::istringstream lines(outp);
  std::string line;
  size_t i = 0;
  while (std::getline(lines, line)) {
    EXPECT_LT(i, cases.size()) << "more result lines than texts in " << gguf;
    if (i >= cases.size()) break;
    std::istringstream ids(line);
    int64_t id;
    while (ids >> id) cases[i].ids.push_back(static_cast<int32_t>(id));
    ++i;
  }
  EXPECT_EQ(i, cases.size()) << "result line count differs from text count in " << gguf;
  return cases;
}

void check_vectors(const std::string& name, size_t expected_cases) {
  const fs::path gguf = test::testdata_dir() / "vocab" / ("ggml-vocab-" + name + ".gguf");
  const Tokenizer& tok = tokenizer_for(gguf);
  const std::vector<Case> cases = read_cases(gguf);
  EXPECT_EQ(cases.size(), expected_cases);
  size_t failures = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::vector<int32_t> got = tok.tokenize(c.text, false, false);
    if (got != c.ids) {
      ++failures;
      ADD_FAILURE() << name << " case " << i << ": text \"" << printable(c.text)
                    << "\"\n  expected " << ids_string(c.ids) << "\n  got      " << ids_string(got);
    }
    // Every text comes back from its tokens (SPM's added leading space is dropped again).
    EXPECT_EQ(printable(tok.detokenize(got, false)), printable(c.text))
        << name << " case " << i << " does not round-trip";
  }
  EXPECT_EQ(failures, 0u) << name << ": " << failures << " of " << cases.size() << " differ";
}

TEST(TokenizerVectors, Qwen2) {
  STRAW_REQUIRE_TESTDATA();
  check_vectors("qwen2", 46);
}

TEST(TokenizerVectors, LlamaBpe) {
  STRAW_REQUIRE_TESTDATA();
  check_vectors("llama-bpe", 46);
}

TEST(TokenizerVectors, LlamaSpm) {
  STRAW_REQUIRE_TESTDATA();
  check_vectors("llama-spm", 46);
}

// --- golden prompts -------------------------------------------------------------------------

// Just enough JSON for the golden files: the string value and the integer array of a key.
size_t value_start(const std::string& json, const std::string& key) {
  const size_t k = json.find("\"" + key + "\"");
  if (k == std::string::npos) return std::string::npos;
  size_t p = json.find(':', k) + 1;
  while (p < json.size() && (json[p] == ' ' || json[p] == '\n')) ++p;
  return p;
}

uint32_t hex4(const std::string& s, size_t p) {
  return std::stoul(s.substr(p, 4), nullptr, 16);
}

std::string json_string_value(const std::string& json, const std::string& key) {
  size_t p = value_start(json, key);
  EXPECT_NE(p, std::string::npos) << "no \"" << key << "\"";
  EXPECT_EQ(json[p], '"');
  std::string out;
  for (++p; p < json.size() && json[p] != '"'; ++p) {
    if (json[p] != '\\') {
      out.push_back(json[p]);
      continue;
    }
    const char e = json[++p];
    switch (e) {
      case 'n':
        out.push_back('\n');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'u': {
        uint32_t c = hex4(json, p + 1);
        p += 4;
        if (c >= 0xD800 && c < 0xDC00 && json.compare(p + 1, 2, "\\u") == 0) {
          c = 0x10000 + ((c - 0xD800) << 10) + (hex4(json, p + 3) - 0xDC00);
          p += 6;
        }
        unicode::append_utf8(out, c);
        break;
      }
      default:
        out.push_back(e);  // \" \\ \/
    }
  }
  return out;
}

std::vector<int32_t> json_int_array(const std::string& json, const std::string& key) {
  size_t p = value_start(json, key);
  EXPECT_NE(p, std::string::npos) << "no \"" << key << "\"";
  const size_t end = json.find(']', p);
  std::string body = json.substr(p + 1, end - p - 1);
  for (char& c : body) {
    if (c == ',') c = ' ';
  }
  std::istringstream ss(body);
  std::vector<int32_t> ids;
  int64_t id;
  while (ss >> id) ids.push_back(static_cast<int32_t>(id));
  return ids;
}

TEST(TokenizerGolden, PromptsMatchLlamaCpp) {
  STRAW_REQUIRE_TESTDATA();
  const fs::path golden = test::testdata_dir() / "golden";
  size_t checked = 0;
  for (const auto& entry : fs::directory_iterator(golden)) {
    if (entry.path().extension() != ".json") continue;
    const std::string json = read_file(entry.path());
    const std::string model = json_string_value(json, "model");
    const std::string text = json_string_value(json, "text");
    const std::vector<int32_t> expected = json_int_array(json, "tokens");
    ASSERT_NE(json.find("\"add_special\": true"), std::string::npos) << entry.path();
    ASSERT_NE(json.find("\"parse_special\": true"), std::string::npos) << entry.path();
    const Tokenizer& tok = tokenizer_for(test::testdata_dir() / "models" / model);
    const std::vector<int32_t> got = tok.tokenize(text, true, true);
    EXPECT_EQ(ids_string(got), ids_string(expected))
        << entry.path().filename() << ": text \"" << printable(text) << "\"";
    ++checked;
  }
  EXPECT_GE(checked, 12u);
}

}  // namespace
}  // namespace straw::model
