// The GGUF reader on broken input: every malformed file must give straw::Error with a message
// naming what is wrong and where ("offset"), never a crash, hang or huge allocation.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "gguf/gguf.h"
#include "gguf_builder.h"

namespace straw::gguf {
namespace {

using fixture::Bytes;

constexpr uint32_t kF32 = 0;
constexpr uint32_t kQ8_0 = 8;
constexpr uint32_t kArray = static_cast<uint32_t>(ValueType::ARRAY);
constexpr uint32_t kString = static_cast<uint32_t>(ValueType::STRING);
constexpr uint32_t kU32 = static_cast<uint32_t>(ValueType::UINT32);
constexpr uint64_t kHuge = uint64_t{1} << 62;
constexpr uint64_t kMinusOne = ~uint64_t{0};

// A small valid file: three metadata entries (string, uint32, array of strings) and two tensors
// whose data ends exactly at the end of the file, so every strict prefix is truncated.
std::string small_file() {
  Bytes b;
  b.header(2, 3)
      .kv_str("general.architecture", "llama")
      .kv_u32("llama.block_count", 5)
      .str("tokenizer.ggml.tokens")
      .u32(kArray)
      .u32(kString)
      .u64(3)
      .str("a")
      .str("bc")
      .str("")
      .tensor("a", {8, 2}, kF32, 0)  // 64 bytes
      .tensor("b", {32}, kQ8_0, 64)  // 34 bytes
      .pad(32);
  for (int i = 0; i < 64 + 34; ++i) b.u8(static_cast<uint8_t>(i));
  return b.b;
}

// One tensor info after a header with no metadata; data of `data_bytes` follows the padding.
std::string one_tensor(std::vector<int64_t> ne, uint32_t type, uint64_t offset,
                       size_t data_bytes = 64) {
  return Bytes().header(1, 0).tensor("t", std::move(ne), type, offset).pad(32).zeros(data_bytes).b;
}

TEST(GgufMalformed, SmallFileIsValid) {
  const std::string f = small_file();
  auto p = fixture::parse(f);
  EXPECT_EQ(p->version(), 3u);
  EXPECT_EQ(p->get_string("general.architecture"), "llama");
  EXPECT_EQ(p->get_u32("llama.block_count"), 5u);
  EXPECT_EQ(p->get_string_array("tokenizer.ggml.tokens"),
            (std::vector<std::string>{"a", "bc", ""}));
  ASSERT_EQ(p->tensors().size(), 2u);
  EXPECT_EQ(p->tensor("b").bytes, 34u);
  EXPECT_EQ(p->tensor("b").data[33], 64 + 33);
  EXPECT_EQ(p->tensor("b").file_offset + 34, f.size());
}

TEST(GgufMalformed, EveryTruncationIsAnError) {
  const std::string f = small_file();
  for (size_t len = 0; len < f.size(); ++len) {
    SCOPED_TRACE(len);
    EXPECT_GGUF_ERROR(f.substr(0, len), "t.gguf: ", "offset");
  }
}

TEST(GgufMalformed, TruncationMessages) {
  const std::string f = small_file();
  EXPECT_GGUF_ERROR(f.substr(0, 0), "empty");
  EXPECT_GGUF_ERROR(f.substr(0, 3), "not a GGUF file");
  EXPECT_GGUF_ERROR(f.substr(0, 10), "truncated", "offset 8", "re-download");
  EXPECT_GGUF_ERROR(f.substr(0, f.size() - 1), "'b'", "extends past the end", "offset");
}

TEST(GgufMalformed, BadMagic) {
  std::string f = small_file();
  f[3] = 'X';
  EXPECT_GGUF_ERROR(f, "not a GGUF file", "0x58", "offset 0");
  EXPECT_GGUF_ERROR("hello, world, this is text", "not a GGUF file");
}

TEST(GgufMalformed, Versions) {
  EXPECT_GGUF_ERROR(Bytes().header(0, 0, 0).b, "version 0", "offset 4");
  EXPECT_GGUF_ERROR(Bytes().header(0, 0, 1).b, "GGUFv1 is no longer supported", "offset 4");
  EXPECT_GGUF_ERROR(Bytes().header(0, 0, 99).b, "version 99", "offset 4");
  EXPECT_GGUF_ERROR(Bytes().header(0, 0, 0x03000000).b, "big-endian", "byte-swapped", "offset 4");
  EXPECT_EQ(fixture::parse(Bytes().header(0, 0, 2).b)->version(), 2u);
  EXPECT_EQ(fixture::parse(Bytes().header(0, 0, 3).b)->version(), 3u);
}

TEST(GgufMalformed, HugeAndNegativeCounts) {
  EXPECT_GGUF_ERROR(Bytes().header(0, kHuge).b, "metadata entries", "offset 16");
  EXPECT_GGUF_ERROR(Bytes().header(0, kMinusOne).b, "negative", "-1", "offset 16");
  EXPECT_GGUF_ERROR(Bytes().header(kHuge, 0).b, "tensors", "offset 8");
  EXPECT_GGUF_ERROR(Bytes().header(kMinusOne, 0).b, "negative", "offset 8");
  EXPECT_GGUF_ERROR(Bytes().header(1, 1).zeros(40).b, "can hold", "offset 8");
  EXPECT_GGUF_ERROR(Bytes().header(kHuge, kHuge).b, "offset");
}

TEST(GgufMalformed, StringLengths) {
  // Key length 2^63 and a length just past the end of the file.
  EXPECT_GGUF_ERROR(Bytes().header(0, 1).u64(uint64_t{1} << 63).zeros(16).b, "length", "offset 24",
                    "truncated or corrupt");
  EXPECT_GGUF_ERROR(Bytes().header(0, 1).u64(1000).zeros(16).b, "length", "1000", "offset 24");
  EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("k").u32(kString).u64(kMinusOne).b, "'k'", "length",
                    "offset 37");
  EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("k").u32(kString).u64(5).raw("abcd").b, "'k'",
                    "length", "offset");
}

TEST(GgufMalformed, Keys) {
  EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("").u32(kU32).u32(1).b, "empty key", "offset 24");
  EXPECT_GGUF_ERROR(Bytes().header(0, 2).kv_u32("k", 1).kv_u32("k", 2).b, "'k'", "appears twice",
                    "offset 41");
}

TEST(GgufMalformed, ValueTypes) {
  EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("k").u32(13).u32(0).b, "unknown value type id 13",
                    "offset 33");
  EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("k").u32(kArray).u32(kArray).u64(1).zeros(16).b,
                    "array of arrays", "offset 37");
  EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("k").u32(kArray).u32(77).u64(0).b,
                    "unknown value type id 77", "offset 37");
  EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("k").u32(kArray).u32(kU32).u64(kHuge).zeros(64).b,
                    "claims", "elements", "offset 41");
  EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("k").u32(kArray).u32(kString).u64(kMinusOne).b,
                    "claims", "offset 41");
  EXPECT_GGUF_ERROR(
      Bytes().header(0, 1).str("k").u32(kArray).u32(kString).u64(2).str("x").u64(100).b,
      "element 1", "'k'", "offset");
}

TEST(GgufMalformed, TensorTypes) {
  EXPECT_GGUF_ERROR(one_tensor({32}, 99, 0), "tensor 't' has unknown type id 99", "offset");
  EXPECT_GGUF_ERROR(one_tensor({32}, 4, 0), "unknown type id 4");  // a removed ggml id
  const std::string unsupported =
      Bytes().header(1, 0).tensor("blk.0.attn_q.weight", {256}, 16, 0).pad(32).zeros(66).b;
  EXPECT_GGUF_ERROR(unsupported,
                    "tensor 'blk.0.attn_q.weight' has type IQ2_XXS, which straw does not support",
                    "supported: F32, F16", "Q4_K", "IQ4_XS", "offset", "re-quantize");
  EXPECT_GGUF_ERROR(one_tensor({256}, 34, 0), "TQ1_0", "does not support");
  EXPECT_GGUF_ERROR(one_tensor({64}, 40, 0), "NVFP4", "does not support");
  EXPECT_GGUF_ERROR(one_tensor({33}, kQ8_0, 0), "ne[0] = 33", "block size 32", "offset");
}

TEST(GgufMalformed, Dimensions) {
  EXPECT_GGUF_ERROR(one_tensor({}, kF32, 0), "0 dimensions", "offset");
  EXPECT_GGUF_ERROR(one_tensor({1, 1, 1, 1, 1}, kF32, 0), "5 dimensions", "1 to 4", "offset");
  EXPECT_GGUF_ERROR(one_tensor({4, -5}, kF32, 0), "ne[1] = -5", "at least 1", "offset");
  EXPECT_GGUF_ERROR(one_tensor({0}, kF32, 0), "ne[0] = 0", "offset");
  EXPECT_GGUF_ERROR(one_tensor({std::numeric_limits<int64_t>::min()}, kF32, 0), "ne[0]");
  EXPECT_GGUF_ERROR(one_tensor({int64_t{1} << 40, int64_t{1} << 40}, kF32, 0), "overflow",
                    "offset");
  // Elements fit int64, bytes do not fit uint64.
  EXPECT_GGUF_ERROR(one_tensor({int64_t{1} << 31, int64_t{1} << 31}, kF32, 0), "offset");
  EXPECT_GGUF_ERROR(one_tensor({int64_t{1} << 62}, kF32, 0), "too large", "offset");
  // A huge shape that does not overflow must still be refused because the file is too short.
  EXPECT_GGUF_ERROR(one_tensor({int64_t{1} << 40}, kF32, 0), "extends past the end", "offset");
}

TEST(GgufMalformed, TensorNames) {
  EXPECT_GGUF_ERROR(Bytes().header(1, 0).tensor("", {8}, kF32, 0).pad(32).zeros(32).b, "empty name",
                    "offset 24");
  const std::string long_name(64, 'n');
  EXPECT_GGUF_ERROR(Bytes().header(1, 0).tensor(long_name, {8}, kF32, 0).pad(32).zeros(32).b,
                    "64 bytes", "at most 63", "offset 24");
  const std::string ok_name(63, 'n');
  EXPECT_NO_THROW(
      fixture::parse(Bytes().header(1, 0).tensor(ok_name, {8}, kF32, 0).pad(32).zeros(32).b));
  EXPECT_GGUF_ERROR(
      Bytes().header(2, 0).tensor("t", {8}, kF32, 0).tensor("t", {8}, kF32, 32).pad(32).zeros(64).b,
      "'t' appears twice", "offset");
}

TEST(GgufMalformed, Offsets) {
  EXPECT_GGUF_ERROR(one_tensor({8}, kF32, 4), "data offset 4", "alignment 32", "offset");
  EXPECT_GGUF_ERROR(one_tensor({8}, kF32, 64), "extends past the end", "offset");
  EXPECT_GGUF_ERROR(one_tensor({8}, kF32, kMinusOne - 31), "offset");
  EXPECT_GGUF_ERROR(one_tensor({8}, kF32, 0, 31), "extends past the end", "offset");
  // Overlap: a is 64 bytes at 0, b starts at 32. Out-of-order but disjoint tensors are fine.
  EXPECT_GGUF_ERROR(Bytes()
                        .header(2, 0)
                        .tensor("a", {16}, kF32, 0)
                        .tensor("b", {8}, kF32, 32)
                        .pad(32)
                        .zeros(128)
                        .b,
                    "'a'", "'b'", "overlap", "offset");
  auto p = fixture::parse(Bytes()
                              .header(2, 0)
                              .tensor("a", {8}, kF32, 32)
                              .tensor("b", {8}, kF32, 0)
                              .pad(32)
                              .zeros(64)
                              .b);
  EXPECT_EQ(p->tensor("a").data - p->tensor("b").data, 32);
}

TEST(GgufMalformed, DataSectionPastEnd) {
  // The tensor infos end unaligned and the file stops before the padding completes.
  std::string f = Bytes().header(1, 0).tensor("t", {8}, kF32, 0).b;
  EXPECT_GGUF_ERROR(f, "data section", "past the end", "offset");
}

TEST(GgufMalformed, Alignment) {
  auto with_alignment = [](Bytes kv) {
    return Bytes().header(1, 1).raw(kv.b).tensor("t", {8}, kF32, 0).pad(64).zeros(64).b;
  };
  EXPECT_GGUF_ERROR(with_alignment(Bytes().kv_u32("general.alignment", 0)), "general.alignment",
                    "is 0", "power of 2", "offset 49");
  EXPECT_GGUF_ERROR(with_alignment(Bytes().kv_u32("general.alignment", 3)), "is 3", "power of 2");
  EXPECT_GGUF_ERROR(with_alignment(Bytes().str("general.alignment").u32(10 /* UINT64 */).u64(32)),
                    "general.alignment has type uint64", "must be uint32", "offset");
  auto p = fixture::parse(with_alignment(Bytes().kv_u32("general.alignment", 64)));
  EXPECT_EQ(p->alignment(), 64u);
  EXPECT_EQ(p->data_offset() % 64, 0u);
  // With 64-byte alignment a 32-aligned offset is misaligned.
  const std::string f = Bytes()
                            .header(1, 1)
                            .kv_u32("general.alignment", 64)
                            .tensor("t", {8}, kF32, 32)
                            .pad(64)
                            .zeros(128)
                            .b;
  EXPECT_GGUF_ERROR(f, "alignment 64");
}

TEST(GgufMalformed, SplitShardFromMemory) {
  const std::string f = Bytes()
                            .header(0, 2)
                            .str("split.no")
                            .u32(static_cast<uint32_t>(ValueType::UINT16))
                            .u8(0)
                            .u8(0)
                            .str("split.count")
                            .u32(static_cast<uint32_t>(ValueType::UINT16))
                            .u8(3)
                            .u8(0)
                            .b;
  EXPECT_GGUF_ERROR(f, "split model");
}

// A getter asked for the wrong type names the key, both types and the byte offset.
TEST(GgufMalformed, GetterErrors) {
  const std::string f =
      Bytes().header(0, 3).kv_str("s", "x").kv_u32("u", 7).str("neg").u32(5 /* INT32 */).u32(~0u).b;
  auto p = fixture::parse(f);
  try {
    p->get_u32("s");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "t.gguf: metadata key 's' has type string, expected uint32 (at byte offset 33)");
  }
  EXPECT_THROW(p->get_string("u"), Error);
  try {
    p->get_u32("missing");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "t.gguf: metadata key 'missing' is missing");
  }
  try {
    p->get_u32("neg");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("-1 (int32), which does not fit uint32"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(p->get_i64("neg"), -1);
  EXPECT_THROW(p->find_u32("s"), Error);
  EXPECT_FALSE(p->find_u32("missing").has_value());
  EXPECT_THROW(p->get_f32("u"), Error);
  EXPECT_THROW(p->get_bool("u"), Error);
  EXPECT_THROW(p->get_string_array("s"), Error);
  EXPECT_THROW(p->get_i32_array("u"), Error);
  EXPECT_THROW(p->get_f32_array("u"), Error);
  try {
    p->tensor("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("t.gguf: tensor 'nope'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace straw::gguf
