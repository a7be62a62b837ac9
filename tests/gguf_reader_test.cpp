// The GGUF reader on the real files in the shared test data (models written by llama.cpp's
// converter and quantizer, vocab-only files from its tokenizer tests).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "test_util.h"

namespace straw::gguf {
namespace {

namespace fs = std::filesystem;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

std::vector<fs::path> gguf_files(const std::string& folder) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(straw::test::testdata_dir() / folder))
    if (e.path().extension() == ".gguf") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Checks what holds for any valid file: sizes follow the shapes, data lies inside the file,
// offsets respect the alignment, and llama.cpp's contiguous, padded layout.
void check_layout(const Reader& r) {
  const uint64_t file_size = r.shard_size(0);
  EXPECT_EQ(r.data_offset() % r.alignment(), 0u);
  uint64_t expect_offset = 0;
  for (const TensorInfo& t : r.tensors()) {
    SCOPED_TRACE(t.name);
    EXPECT_GE(t.n_dims, 1);
    EXPECT_LE(t.n_dims, 4);
    EXPECT_EQ(t.bytes, quant::row_bytes(t.type, t.ne[0]) * static_cast<uint64_t>(t.n_rows()));
    EXPECT_EQ(t.offset, expect_offset);
    expect_offset += (t.bytes + r.alignment() - 1) / r.alignment() * r.alignment();
    EXPECT_EQ(t.file_offset, r.data_offset() + t.offset);
    EXPECT_LE(t.file_offset + t.bytes, file_size);
    EXPECT_EQ(t.data - r.tensors()[0].data,
              static_cast<ptrdiff_t>(t.file_offset - r.tensors()[0].file_offset));
    // Touch the first and last byte: the pointer must be inside the mapping.
    volatile uint8_t first = t.data[0], last = t.data[t.bytes - 1];
    (void)first;
    (void)last;
    EXPECT_EQ(r.find_tensor(t.name), &t);
  }
  if (!r.tensors().empty()) {
    EXPECT_LE(r.data_offset() + expect_offset, file_size);
    EXPECT_GE(r.data_offset() + expect_offset + r.alignment(), file_size);
  }
}

TEST(GgufReader, OpensEveryModel) {
  STRAW_REQUIRE_TESTDATA();
  const auto files = gguf_files("models");
  ASSERT_GE(files.size(), 12u);
  for (const fs::path& f : files) {
    SCOPED_TRACE(f.string());
    auto r = Reader::open(f.string());
    EXPECT_EQ(r->path(), f.string());
    EXPECT_EQ(r->version(), 3u);
    EXPECT_EQ(r->alignment(), 32u);
    EXPECT_EQ(r->shard_count(), 1);
    EXPECT_GT(r->tensors().size(), 20u);
    EXPECT_TRUE(r->has("general.architecture"));
    EXPECT_NE(r->find_tensor("token_embd.weight"), nullptr);
    EXPECT_EQ(r->find_tensor("no.such.tensor"), nullptr);
    check_layout(*r);
    for (const auto& [key, value] : r->metadata()) {
      EXPECT_FALSE(to_json(value).empty());
      EXPECT_FALSE(to_display(value, 4).empty());
    }
  }
}

TEST(GgufReader, Stories260K) {
  STRAW_REQUIRE_TESTDATA();
  auto r = Reader::open((straw::test::testdata_dir() / "models/stories260K.gguf").string());
  EXPECT_EQ(r->get_string("general.architecture"), "llama");
  EXPECT_EQ(r->get_u32("llama.block_count"), 5u);
  EXPECT_EQ(r->get_u32("llama.embedding_length"), 64u);
  EXPECT_EQ(r->get_u32("llama.attention.head_count"), 8u);
  EXPECT_EQ(r->get_u32("llama.attention.head_count_kv"), 4u);
  EXPECT_EQ(r->get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(r->get_string_array("tokenizer.ggml.tokens").size(), 512u);
  EXPECT_EQ(r->get_f32_array("tokenizer.ggml.scores").size(), 512u);
  EXPECT_EQ(r->get_u32("tokenizer.ggml.bos_token_id"), 1u);
  // Stored as uint32 0xFFFFFFFF ("no separator"): fits uint32 and int64, not int32.
  EXPECT_EQ(r->get_u32("tokenizer.ggml.seperator_token_id"), 4294967295u);
  EXPECT_EQ(r->get_i64("tokenizer.ggml.seperator_token_id"), 4294967295);
  EXPECT_EQ(r->tensors().size(), 48u);
  const TensorInfo& emb = r->tensor("token_embd.weight");
  EXPECT_EQ(emb.type, quant::Type::F32);
  EXPECT_EQ(emb.n_dims, 2);
  EXPECT_EQ(emb.ne[0], 64);
  EXPECT_EQ(emb.ne[1], 512);
  EXPECT_EQ(emb.ne[2], 1);
  EXPECT_EQ(emb.n_elements(), 64 * 512);
  EXPECT_EQ(emb.n_rows(), 512);
  EXPECT_EQ(emb.bytes, 64u * 512 * 4);
  EXPECT_EQ(r->find_f32("llama.attention.layer_norm_rms_epsilon").has_value(), true);
}

TEST(GgufReader, QuantizedModelsHoldTheirTypes) {
  STRAW_REQUIRE_TESTDATA();
  auto r = Reader::open((straw::test::testdata_dir() / "models/qwen2-tiny-iq4_xs.gguf").string());
  EXPECT_EQ(r->tensor("token_embd.weight").type, quant::Type::IQ4_XS);
  EXPECT_EQ(r->tensor("output.weight").type, quant::Type::Q6_K);
  EXPECT_EQ(r->tensor("output_norm.weight").type, quant::Type::F32);
  EXPECT_EQ(r->get_u32("qwen2.block_count"), 4u);
  EXPECT_EQ(r->tensors().size(), 51u);
}

TEST(GgufReader, OpensEveryVocab) {
  STRAW_REQUIRE_TESTDATA();
  for (const fs::path& f : gguf_files("vocab")) {
    SCOPED_TRACE(f.string());
    const auto start = std::chrono::steady_clock::now();
    auto r = Reader::open(f.string());
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(r->version(), 3u);
    EXPECT_TRUE(r->tensors().empty());
    EXPECT_EQ(r->data_offset(), r->shard_size(0));  // no tensors: no padding, ends at EOF
    const Value* tokens = r->find("tokenizer.ggml.tokens");
    ASSERT_NE(tokens, nullptr);
    EXPECT_EQ(tokens->elem_type(), ValueType::STRING);
    EXPECT_LT(seconds, kSanitized ? 10.0 : 1.0)
        << "opening a vocabulary of " << tokens->size() << " tokens";
    if (f.filename() == "ggml-vocab-qwen2.gguf") {
      EXPECT_EQ(tokens->size(), 151936u);
      EXPECT_EQ(r->get_string("tokenizer.ggml.model"), "gpt2");
      EXPECT_EQ(r->get_string("tokenizer.ggml.pre"), "qwen2");
      EXPECT_EQ(r->get_string_array("tokenizer.ggml.merges").size(), 151387u);
      EXPECT_EQ(tokens->str_at(0), "!");
    }
    if (f.filename() == "ggml-vocab-llama-spm.gguf") {
      EXPECT_EQ(tokens->size(), 32000u);
      EXPECT_EQ(r->get_f32_array("tokenizer.ggml.scores").size(), 32000u);
      EXPECT_EQ(r->get_i32_array("tokenizer.ggml.token_type").size(), 32000u);
    }
  }
}

TEST(GgufReader, OpenErrors) {
  try {
    Reader::open("/nonexistent/model.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf: cannot open"), std::string::npos)
        << e.what();
  }
  const std::string empty = straw::test::temp_path("empty.gguf").string();
  { std::ofstream(empty, std::ios::binary); }
  try {
    Reader::open(empty);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty (0 bytes)"), std::string::npos) << e.what();
  }
  const std::string tiny = straw::test::temp_path("tiny.gguf").string();
  { std::ofstream(tiny, std::ios::binary) << "GG"; }
  EXPECT_THROW(Reader::open(tiny), Error);
  EXPECT_THROW(Reader::open(straw::test::temp_path("").string()), Error);  // a directory
}

}  // namespace
}  // namespace straw::gguf
