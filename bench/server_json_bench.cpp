// Constrained JSON decoding (server/json_constraint.h) on Qwen2's full vocabulary (151,936
// tokens, testdata/vocab/ggml-vocab-qwen2.gguf): mask() in typical states of a document (the
// sampler calls it when the token it would pick is refused), allows() of one token, and the
// once-per-model and once-per-request setup. Counter `allowed`: tokens mask() leaves allowed.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "json_constraint.h"
#include "model/tokenizer/tokenizer.h"

namespace {

using nlohmann::json;
using straw::serve::JsonConstraint;
using straw::serve::JsonSchema;
using straw::serve::TokenTrie;

struct Vocab {
  std::unique_ptr<straw::model::Tokenizer> tokenizer;
  std::vector<std::string> pieces;
  std::vector<int32_t> eog;
  std::shared_ptr<const TokenTrie> trie;
};

// Loaded once; null when the shared test data is absent.
const Vocab* qwen2() {
  static const std::unique_ptr<Vocab> v = []() -> std::unique_ptr<Vocab> {
    const char* env = std::getenv("STRAW_TESTDATA");
    const std::filesystem::path path =
        std::filesystem::path(env ? env : STRAW_TESTDATA_DIR) / "vocab/ggml-vocab-qwen2.gguf";
    if (!std::filesystem::exists(path)) return nullptr;
    auto out = std::make_unique<Vocab>();
    out->tokenizer = straw::model::Tokenizer::from_gguf(*straw::gguf::Reader::open(path.string()));
    for (int32_t t = 0; t < out->tokenizer->n_vocab(); t++) {
      out->pieces.push_back(out->tokenizer->token_to_piece(t, false));
      if (out->tokenizer->is_eog(t)) out->eog.push_back(t);
    }
    out->trie = std::make_shared<const TokenTrie>(out->pieces, out->eog);
    return out;
  }();
  return v.get();
}

const char* const kPerson = R"({"type":"object","properties":{
    "name":{"type":"string"},"age":{"type":"integer"},
    "city":{"type":"string","maxLength":12},
    "tags":{"type":"array","items":{"type":"string"}},
    "role":{"enum":["admin","user","guest"]},
    "note":{"anyOf":[{"type":"string","maxLength":200},{"enum":["n/a","unknown"]}]}},
  "required":["name","age"],"additionalProperties":false})";
const char* const kAnyObject = R"({"type":"object"})";

void BM_JsonMask(benchmark::State& state, const char* schema, const char* prefix) {
  const Vocab* v = qwen2();
  if (!v) {
    state.SkipWithError("testdata/vocab/ggml-vocab-qwen2.gguf not found");
    return;
  }
  JsonConstraint c(JsonSchema::compile(json::parse(schema)), v->trie);
  for (int32_t t : v->tokenizer->tokenize(prefix, false, false)) c.accept(t);
  std::vector<uint8_t> allowed(v->pieces.size());
  for (auto _ : state) {
    std::fill(allowed.begin(), allowed.end(), 1);
    c.mask(allowed);
    benchmark::DoNotOptimize(allowed.data());
  }
  size_t n = 0;
  for (uint8_t a : allowed) n += a;
  state.counters["allowed"] = static_cast<double>(n);
}

// Where the text is: the prefix already accepted.
BENCHMARK_CAPTURE(BM_JsonMask, object_start, kPerson, "{")->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_JsonMask, in_declared_key, kPerson, "{\"na")->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_JsonMask, in_free_key, kAnyObject, "{\"na")->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_JsonMask, value_start, kAnyObject, "{\"name\":")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_JsonMask, in_string, kPerson, "{\"name\":\"Jo")->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_JsonMask, in_string_max_length, kPerson, "{\"city\":\"Par")
    ->Unit(benchmark::kMicrosecond);
// A string that may also be an enum value with a bounded length: no bulk decision, the trie
// walk visits every token that fits (the worst case).
BENCHMARK_CAPTURE(BM_JsonMask, in_string_or_enum, kPerson, "{\"note\":\"n")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_JsonMask, in_enum, kPerson, "{\"role\":\"ad")->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_JsonMask, in_number, kPerson, "{\"age\":4")->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_JsonMask, after_value, kPerson, "{\"name\":\"Jo\"")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_JsonMask, array_item, kPerson, "{\"tags\":[\"a\",")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_JsonMask, done, kPerson, "{\"name\":\"Jo\",\"age\":4}")
    ->Unit(benchmark::kMicrosecond);

// allows() of a 5-byte token inside a string: the sampler's first, usual question.
void BM_JsonAllows(benchmark::State& state) {
  const Vocab* v = qwen2();
  if (!v) {
    state.SkipWithError("testdata/vocab/ggml-vocab-qwen2.gguf not found");
    return;
  }
  JsonConstraint c(JsonSchema::compile(json::parse(kPerson)), v->trie);
  for (int32_t t : v->tokenizer->tokenize("{\"name\":\"Jo", false, false)) c.accept(t);
  const int32_t token = v->tokenizer->tokenize(" Smith", false, false)[0];
  for (auto _ : state) benchmark::DoNotOptimize(c.allows(token));
}
BENCHMARK(BM_JsonAllows);

// Once per model: the trie of 151,936 pieces.
void BM_TokenTrieBuild(benchmark::State& state) {
  const Vocab* v = qwen2();
  if (!v) {
    state.SkipWithError("testdata/vocab/ggml-vocab-qwen2.gguf not found");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(TokenTrie(v->pieces, v->eog).nodes().size());
}
BENCHMARK(BM_TokenTrieBuild)->Unit(benchmark::kMillisecond);

// Once per request: compiling the schema.
void BM_JsonSchemaCompile(benchmark::State& state) {
  const json schema = json::parse(kPerson);
  for (auto _ : state) benchmark::DoNotOptimize(JsonSchema::compile(schema).get());
}
BENCHMARK(BM_JsonSchemaCompile)->Unit(benchmark::kMicrosecond);

}  // namespace
