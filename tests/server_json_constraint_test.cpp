// JsonConstraint (server/json_constraint.h) as a sampler drives it: random walks that pick
// uniformly among the tokens mask() allows, over a small synthetic vocabulary and over real
// Qwen2 vocabularies, must always end in a document that parses and validates against the schema
// (checked by an independent validator below); mask() must agree with allows() on every token;
// special tokens are never allowed; end-of-generation tokens exactly when the document is done.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "json_constraint.h"
#include "model/tokenizer/tokenizer.h"
#include "straw/error.h"
#include "straw/straw.h"
#include "test_util.h"

namespace straw::serve {
namespace {

using nlohmann::json;

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool type_ok(const json& v, const std::string& t) {
  if (t == "integer")
    return v.is_number_integer() ||
           (v.is_number_float() && v.get<double>() == std::floor(v.get<double>()));
  if (t == "number") return v.is_number();
  if (t == "string") return v.is_string();
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "boolean") return v.is_boolean();
  return t == "null" && v.is_null();
}

// A JSON Schema validator for the subset the compiler supports, written independently of it.
bool valid(const json& v, const json& schema, const json& root) {
  if (schema.is_boolean()) return schema.get<bool>();
  for (const auto& [k, s] : schema.items()) {
    bool ok = true;
    if (k == "type") {
      const json list = s.is_array() ? s : json::array({s});
      ok = std::any_of(list.begin(), list.end(), [&](const json& t) { return type_ok(v, t); });
    } else if (k == "enum") {
      ok = std::find(s.begin(), s.end(), v) != s.end();
    } else if (k == "const") {
      ok = v == s;
    } else if (k == "minLength" && v.is_string()) {
      ok = code_points(v.get<std::string>()) >= s.get<size_t>();
    } else if (k == "maxLength" && v.is_string()) {
      ok = code_points(v.get<std::string>()) <= s.get<size_t>();
    } else if (k == "properties" && v.is_object()) {
      for (const auto& [name, sub] : s.items())
        if (v.contains(name) && !valid(v[name], sub, root)) ok = false;
    } else if (k == "additionalProperties" && v.is_object()) {
      for (const auto& [name, val] : v.items()) {
        const bool declared = schema.contains("properties") && schema["properties"].contains(name);
        if (!declared && !valid(val, s, root)) ok = false;
      }
    } else if (k == "required" && v.is_object()) {
      for (const json& name : s) ok = ok && v.contains(name.get<std::string>());
    } else if (k == "prefixItems" && v.is_array()) {
      for (size_t i = 0; i < std::min(v.size(), s.size()); i++) ok = ok && valid(v[i], s[i], root);
    } else if (k == "items" && v.is_array()) {
      if (s.is_array()) {
        for (size_t i = 0; i < v.size(); i++) {
          if (i < s.size())
            ok = ok && valid(v[i], s[i], root);
          else if (schema.contains("additionalItems"))
            ok = ok && valid(v[i], schema["additionalItems"], root);
        }
      } else {
        const size_t start = schema.contains("prefixItems") ? schema["prefixItems"].size() : 0;
        for (size_t i = start; i < v.size(); i++) ok = ok && valid(v[i], s, root);
      }
    } else if (k == "minItems" && v.is_array()) {
      ok = v.size() >= s.get<size_t>();
    } else if (k == "maxItems" && v.is_array()) {
      ok = v.size() <= s.get<size_t>();
    } else if (k == "anyOf" || k == "oneOf") {
      size_t n = 0;
      for (const json& sub : s) n += valid(v, sub, root);
      ok = k == "anyOf" ? n > 0 : n == 1;
    } else if (k == "allOf") {
      for (const json& sub : s) ok = ok && valid(v, sub, root);
    } else if (k == "$ref") {
      ok = valid(v, root.at(json::json_pointer(s.get<std::string>().substr(1))), root);
    }
    if (!ok) return false;
  }
  return true;
}

// Pieces a sampler may find: every printable byte, whitespace, lone UTF-8 bytes (partial
// characters), and multi-byte pieces that cross token boundaries of JSON. Token 0 is a control
// token (empty piece); the last two are end-of-generation tokens, one with a visible piece.
std::vector<std::string> small_pieces() {
  std::vector<std::string> p = {""};
  for (int b = 0x20; b < 0x7F; b++) p.emplace_back(1, static_cast<char>(b));
  for (const char* s :
       {"\n",          "\t",         "\r",         "\xC3",         "\xA9",
        "\xE2",        "\x82",       "\xAC",       "\xF0",         "\x9F",
        "\x98",        "\x80",       "\xED",       "\xBF",         "\xFF",
        "{\"",         "\":",        "\",",        "\"}",          "\"]",
        "true",        "false",      "null",       "nul",          "12",
        "-3",          ".5",         "e+",         "E-1",          "00",
        "\"a",         "ab",         "\xC3\xA9",   "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
        "\\u00e9",     "\\ud83d",    "\\ude00",    "\\n",          "\\\"",
        "  ",          "\n  ",       "},",         "],",           "[{",
        "[]",          "{}",         "\"name\"",   "\"age\":",     "\"kind",
        "kind\":\"",   " \"",        ", \"",       "\"}]",         "a\"",
        "x\": ",       "\xC3\xA9\"", "\"\xE2\x82", "1,",           "0]",
        "\"t\":\"a\"", "\"t",        "\"v\":",     "next",         "\"children\":[",
        "red",         "\"red\"",    "green\""})
    p.emplace_back(s);
  p.emplace_back("");       // end of generation
  p.emplace_back("<eos>");  // end of generation with a visible piece
  return p;
}

std::shared_ptr<const TokenTrie> small_vocab() {
  const auto pieces = small_pieces();
  const auto n = static_cast<int32_t>(pieces.size());
  return std::make_shared<const TokenTrie>(pieces, std::vector<int32_t>{n - 2, n - 1});
}

// One random generation: uniform among allowed tokens for `budget` steps, then mostly tokens that
// close things (a quote, a bracket, end of generation), so every walk ends. Checks mask() against
// allows() on the tokens in `check` (all when empty) at every step.
std::string random_walk(const std::shared_ptr<const JsonSchema>& schema,
                        const std::shared_ptr<const TokenTrie>& vocab, std::mt19937& rng,
                        int budget, const std::vector<int32_t>& check = {}) {
  JsonConstraint c(schema, vocab);
  const int32_t n = vocab->n_vocab();
  std::map<std::string, int32_t> by_piece;
  for (int32_t t = n - 1; t >= 0; t--) by_piece[vocab->piece(t)] = t;
  std::vector<uint8_t> allowed(n);
  for (int step = 0;; step++) {
    if (step > 20000) {
      ADD_FAILURE() << "walk did not end: " << c.text();
      return c.text();
    }
    std::fill(allowed.begin(), allowed.end(), 1);
    c.mask(allowed);
    std::vector<int32_t> ids;
    for (int32_t t = 0; t < n; t++)
      if (allowed[t]) ids.push_back(t);
    if (check.empty()) {
      for (int32_t t = 0; t < n; t++)
        EXPECT_EQ(allowed[t] != 0, c.allows(t)) << "token " << t << " after: " << c.text();
    } else {
      for (int32_t t : check)
        EXPECT_EQ(allowed[t] != 0, c.allows(t)) << "token " << t << " after: " << c.text();
    }
    for (int32_t t : ids) EXPECT_FALSE(vocab->piece(t).empty() && !vocab->is_eog(t));
    for (int32_t e : vocab->eog()) EXPECT_EQ(allowed[e] != 0, c.done()) << c.text();
    EXPECT_FALSE(ids.empty());
    int32_t pick = ids[std::uniform_int_distribution<size_t>(0, ids.size() - 1)(rng)];
    if (step >= budget && c.done()) {
      pick = vocab->eog()[0];
    } else if (step >= budget && std::bernoulli_distribution(0.75)(rng)) {
      for (const char* p : {"\"", "}", "]", "0", "null", ",", ":"}) {
        auto it = by_piece.find(p);
        if (it != by_piece.end() && allowed[it->second]) {
          pick = it->second;
          break;
        }
      }
    }
    if (vocab->is_eog(pick)) {
      EXPECT_TRUE(c.done());
      c.accept(pick);
      EXPECT_TRUE(c.done());
      return c.text();
    }
    c.accept(pick);
  }
}

void check_document(const std::string& text, const json& schema_json) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    ADD_FAILURE() << "does not parse (" << e.what() << "): " << text;
    return;
  }
  EXPECT_TRUE(valid(doc, schema_json, schema_json))
      << "does not validate: " << text << "\nschema: " << schema_json.dump();
}

const char* const kSchemas[] = {
    R"({"type":"object"})",
    "true",
    R"({"type":"object","properties":{
        "name":{"type":"string","minLength":1,"maxLength":8},
        "age":{"type":"integer"},
        "color":{"enum":["red","green",null]},
        "tags":{"type":"array","items":{"type":"string","maxLength":3},"maxItems":3},
        "address":{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":"number"}},
                   "required":["city"],"additionalProperties":false}},
      "required":["name","age"],"additionalProperties":false})",
    R"({"anyOf":[
        {"type":"object","properties":{"t":{"const":"a"},"x":{"type":"integer"}},
         "required":["t","x"],"additionalProperties":false},
        {"type":"object","properties":{"t":{"const":"b"},"y":{"type":"string"}},
         "required":["t","y"],"additionalProperties":false},
        {"type":"array","prefixItems":[{"type":"boolean"}],"items":{"type":"null"},"minItems":1}]})",
    R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
          "children":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},
          "required":["v"],"additionalProperties":false}},
        "$ref":"#/$defs/node"})",
    R"({"type":"array","items":{"anyOf":[{"type":"string","maxLength":2},
        {"enum":["red","green","\u00e9t\u00e9"]},{"type":"integer"},{"enum":[1.5,-3]}]},
        "minItems":2,"maxItems":6})",
    R"({"type":"object","properties":{"kind":{"type":"string"},"n":true,"s":true,"extra":true},
        "required":["kind"],"additionalProperties":false,
        "oneOf":[{"properties":{"kind":{"const":"a"},"n":{"type":"number"}}},
                 {"properties":{"kind":{"const":"b"},"s":{"type":"string","minLength":2}},
                  "required":["s"]}],
        "allOf":[{"properties":{"extra":{"type":"boolean"}}}]})",
    R"({"type":"object","additionalProperties":{"type":"string","maxLength":4}})",
};

TEST(ServerJsonConstraint, RandomWalksOverSmallVocabulary) {
  const auto vocab = small_vocab();
  std::mt19937 rng(7);
  for (const char* text : kSchemas) {
    const json schema_json = json::parse(text);
    JsonSchemaOptions options;
    options.max_depth = 6;
    const auto schema = JsonSchema::compile(schema_json, options);
    for (int walk = 0; walk < 25; walk++) {
      const std::string doc = random_walk(schema, vocab, rng, 10 + walk * 4);
      check_document(doc, schema_json);
      JsonMatcher m(schema);
      EXPECT_TRUE(m.feed(doc) && m.done()) << doc;
    }
  }
}

TEST(ServerJsonConstraint, SpecialAndEndTokens) {
  const auto vocab = small_vocab();
  const int32_t n = vocab->n_vocab();
  JsonConstraint c(JsonSchema::compile(json::parse(R"({"type":"integer"})")), vocab);
  EXPECT_FALSE(c.allows(0));  // control token
  EXPECT_FALSE(c.allows(n - 1));
  EXPECT_FALSE(c.allows(-1));
  EXPECT_FALSE(c.allows(n));
  EXPECT_THROW(c.accept(n - 2), straw::Error);  // not done yet
  const int32_t one = '1' - 0x20 + 1;
  ASSERT_EQ(vocab->piece(one), "1");
  c.accept(one);
  EXPECT_TRUE(c.done());
  EXPECT_TRUE(c.allows(n - 1));
  EXPECT_TRUE(c.allows(n - 2));
  c.accept(n - 1);
  std::vector<uint8_t> allowed(n, 1);
  c.mask(allowed);
  for (int32_t t = 0; t < n - 2; t++) EXPECT_EQ(allowed[t], 0) << t;
  EXPECT_EQ(c.text(), "1");
  std::vector<uint8_t> wrong(n + 1, 1);
  EXPECT_THROW(c.mask(wrong), straw::Error);
  EXPECT_THROW(
      JsonConstraint(JsonSchema::any_object(),
                     std::make_shared<const TokenTrie>(small_pieces(), std::vector<int32_t>{})),
      straw::Error);
}

// Inside a string, plain tokens are decided in bulk from their code point counts; with a bounded
// length and an enum alternative, longer plain tokens may still spell an enum value.
TEST(ServerJsonConstraint, PlainTokensInStrings) {
  const auto vocab = small_vocab();
  std::map<std::string, int32_t> id;
  for (int32_t t = vocab->n_vocab() - 1; t >= 0; t--) id[vocab->piece(t)] = t;
  auto allowed_after_quote = [&](const char* schema) {
    JsonConstraint c(JsonSchema::compile(json::parse(schema)), vocab);
    c.accept(id["\""]);
    std::vector<uint8_t> allowed(vocab->n_vocab(), 1);
    c.mask(allowed);
    for (int32_t t = 0; t < vocab->n_vocab(); t++) EXPECT_EQ(allowed[t] != 0, c.allows(t)) << t;
    return allowed;
  };
  auto a = allowed_after_quote(R"({"anyOf":[{"type":"string","maxLength":2},{"enum":["red"]}]})");
  EXPECT_TRUE(a[id["red"]]);  // 3 code points: only as the enum value
  EXPECT_TRUE(a[id["ab"]]);
  EXPECT_TRUE(a[id["\xE2\x82\xAC"]]);
  EXPECT_FALSE(a[id["true"]]);
  EXPECT_FALSE(a[id["green\""]]);
  a = allowed_after_quote(R"({"type":"string","maxLength":2})");
  EXPECT_FALSE(a[id["red"]]);
  EXPECT_TRUE(a[id["ab"]]);
  EXPECT_TRUE(a[id["\"}"]] == 0 && a[id["\""]] == 1);
  a = allowed_after_quote(R"({"type":"string"})");
  EXPECT_TRUE(a[id["true"]] && a[id["\xC3"]] && a[id["\\u00e9"]] && a[id["\\n"]]);
  EXPECT_FALSE(a[id["\n"]]);  // a raw control byte
}

TEST(ServerJsonConstraint, ResponseFormat) {
  EXPECT_EQ(schema_for_response_format(json(nullptr)), nullptr);
  EXPECT_EQ(schema_for_response_format(json{{"type", "text"}}), nullptr);
  const auto object = schema_for_response_format(json{{"type", "json_object"}});
  ASSERT_NE(object, nullptr);
  JsonMatcher m(object);
  EXPECT_FALSE(m.feed("[]"));
  const json rf = json::parse(R"({"type":"json_schema","json_schema":{"name":"n","strict":true,
      "schema":{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}}})");
  JsonMatcher m2(schema_for_response_format(rf));
  EXPECT_TRUE(m2.feed(R"({"a":3})") && m2.done());
  try {
    schema_for_response_format(json::parse(
        R"({"type":"json_schema","json_schema":{"name":"n","schema":{"type":"string","pattern":"x"}}})"));
    ADD_FAILURE() << "pattern accepted";
  } catch (const straw::Error& e) {
    EXPECT_NE(std::string(e.what()).find("response_format.json_schema.schema"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("#/pattern"), std::string::npos) << e.what();
  }
  EXPECT_THROW(schema_for_response_format(json{{"type", "xml"}}), straw::Error);
  EXPECT_THROW(schema_for_response_format(json{{"type", "json_schema"}}), straw::Error);
}

// The tiny Qwen2 test model's vocabulary (1027 tokens cut from Qwen2's), through the public API.
TEST(ServerJsonConstraint, QwenTinyModelVocabulary) {
  STRAW_REQUIRE_TESTDATA();
  auto model =
      Model::load({.path = (test::testdata_dir() / "models/qwen2-tiny-f32.gguf").string()});
  const auto vocab = TokenTrie::from_model(*model);
  ASSERT_EQ(vocab->n_vocab(), model->n_vocab());
  ASSERT_FALSE(vocab->eog().empty());
  std::mt19937 rng(11);
  for (const char* text : kSchemas) {
    const json schema_json = json::parse(text);
    const auto schema = JsonSchema::compile(schema_json);
    for (int walk = 0; walk < 4; walk++)
      check_document(random_walk(schema, vocab, rng, 30), schema_json);
  }
}

// Qwen2's full vocabulary (151,936 tokens, testdata/vocab): mask() against allows() on every
// token along a few walks, which covers the bulk plain-text path inside strings.
TEST(ServerJsonConstraint, QwenFullVocabulary) {
  STRAW_REQUIRE_TESTDATA();
  const auto reader =
      gguf::Reader::open((test::testdata_dir() / "vocab/ggml-vocab-qwen2.gguf").string());
  const auto tok = model::Tokenizer::from_gguf(*reader);
  std::vector<std::string> pieces(tok->n_vocab());
  std::vector<int32_t> eog;
  for (int32_t t = 0; t < tok->n_vocab(); t++) {
    pieces[t] = tok->token_to_piece(t, false);
    if (tok->is_eog(t)) eog.push_back(t);
  }
  const auto vocab = std::make_shared<const TokenTrie>(pieces, eog);
  std::mt19937 rng(5);
  for (const char* text : {kSchemas[0], kSchemas[2], kSchemas[5]}) {
    const json schema_json = json::parse(text);
    const auto schema = JsonSchema::compile(schema_json);
    check_document(random_walk(schema, vocab, rng, 12), schema_json);
  }
}

}  // namespace
}  // namespace straw::serve
