// Writes the seed corpus of the GGUF fuzzer (fuzz/corpus/) when STRAW_GGUF_CORPUS_DIR is set:
//   STRAW_GGUF_CORPUS_DIR=fuzz/corpus build/bin/straw_tests --gtest_filter=GgufCorpus.*
// Otherwise the test is skipped; the seeds are committed, this regenerates them.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <tuple>
#include <vector>

#include "gguf/gguf.h"
#include "gguf_builder.h"

namespace straw::gguf {
namespace {

using fixture::Bytes;
using quant::Type;

void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes a model whose tensor bytes are a simple counter pattern.
void write_model(const std::string& path, uint32_t align,
                 const std::vector<std::pair<std::string, Value>>& kvs,
                 const std::vector<std::tuple<std::string, Type, std::vector<int64_t>>>& tensors) {
  Writer w(path, align);
  for (const auto& [k, v] : kvs) w.set(k, v);
  for (const auto& [name, type, ne] : tensors) w.add_tensor(name, type, ne);
  w.begin_data();
  uint8_t counter = 0;
  while (w.bytes_remaining() > 0) {
    w.write(&counter, 1);
    ++counter;
  }
  w.finish();
}

TEST(GgufCorpus, Write) {
  const char* dir_env = std::getenv("STRAW_GGUF_CORPUS_DIR");
  if (!dir_env) GTEST_SKIP() << "set STRAW_GGUF_CORPUS_DIR to regenerate fuzz/corpus";
  const std::filesystem::path dir = dir_env;
  std::filesystem::create_directories(dir);

  write_model((dir / "values.seed").string(), 32,
              {{"general.architecture", Value::str("llama")},
               {"u8", Value::u8(1)},
               {"i8", Value::i8(-1)},
               {"u16", Value::u16(2)},
               {"i16", Value::i16(-2)},
               {"u32", Value::u32(3)},
               {"i32", Value::i32(-3)},
               {"u64", Value::u64(4)},
               {"i64", Value::i64(-4)},
               {"f32", Value::f32(0.5f)},
               {"f64", Value::f64(0.25)},
               {"b", Value::boolean(true)},
               {"s", Value::str("x\n\xff")},
               {"as", Value::string_array({"a", "", "bc"})},
               {"ai", Value::i32_array({1, -1})},
               {"af", Value::f32_array({1.5f})},
               {"ab", Value::bool_array({true, false})},
               {"ae", Value::empty_array(ValueType::UINT64)}},
              {{"a.weight", Type::F32, {8, 2}}, {"b.weight", Type::Q8_0, {32}}});
  write_model((dir / "types-align64.seed").string(), 64,
              {{"general.architecture", Value::str("qwen2")}},
              {{"f16", Type::F16, {5, 3}},
               {"bf16", Type::BF16, {3}},
               {"q4_0", Type::Q4_0, {32, 2}},
               {"q4_k", Type::Q4_K, {256}},
               {"q6_k", Type::Q6_K, {256}},
               {"iq4_xs", Type::IQ4_XS, {256}},
               {"iq4_nl.4d", Type::IQ4_NL, {32, 1, 1, 2}}});
  write_model((dir / "vocab-only.seed").string(), 32,
              {{"tokenizer.ggml.model", Value::str("gpt2")},
               {"tokenizer.ggml.tokens", Value::string_array({"a", "b", "ab", "<|endoftext|>"})},
               {"tokenizer.ggml.merges", Value::string_array({"a b"})},
               {"tokenizer.ggml.token_type", Value::i32_array({1, 1, 1, 3})}},
              {});
  write_model((dir / "split-shard.seed").string(), 32,
              {{"split.no", Value::u16(0)},
               {"split.count", Value::u16(1)},
               {"split.tensors.count", Value::i32(1)}},
              {{"t", Type::F32, {4}}});
  write_bytes(dir / "v2-empty.seed", Bytes().header(0, 0, 2).b);

  // Malformed seeds: near misses of valid files.
  const std::string values = read_bytes(dir / "values.seed");
  write_bytes(dir / "bad-truncated.seed", values.substr(0, values.size() / 2));
  write_bytes(dir / "bad-version.seed", Bytes().header(0, 0, 0x03000000).b);
  write_bytes(dir / "bad-array-of-arrays.seed",
              Bytes().header(0, 1).str("k").u32(9).u32(9).u64(1).u32(4).u64(1).u32(7).b);
  write_bytes(
      dir / "bad-overlap.seed",
      Bytes().header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {8}, 0, 32).pad(32).zeros(96).b);
  write_bytes(dir / "bad-unsupported.seed",
              Bytes().header(1, 0).tensor("blk.0.attn_q.weight", {256}, 16, 0).pad(32).zeros(66).b);
  for (const auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_LT(std::filesystem::file_size(e.path()), 4096u) << e.path();
}

}  // namespace
}  // namespace straw::gguf
