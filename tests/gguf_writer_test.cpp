// Writer -> Reader round trips: every value type, arrays, tensors of several types and odd sizes,
// alignments, streaming in odd chunks, sparse skip(), writer errors, and gguf-split shard sets.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "test_util.h"

namespace straw::gguf {
namespace {

using quant::Type;

std::string tmp(const std::string& name) {
  return straw::test::temp_path(name).string();
}

// Deterministic bytes for tensor i.
std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

std::vector<std::pair<std::string, Value>> all_values() {
  return {
      {"u8", Value::u8(255)},
      {"i8", Value::i8(-128)},
      {"u16", Value::u16(65535)},
      {"i16", Value::i16(-32768)},
      {"u32", Value::u32(4294967295u)},
      {"i32", Value::i32(std::numeric_limits<int32_t>::min())},
      {"u64", Value::u64(std::numeric_limits<uint64_t>::max())},
      {"i64", Value::i64(std::numeric_limits<int64_t>::min())},
      {"f32", Value::f32(0.1f)},
      {"f64", Value::f64(-1e300)},
      {"bool.t", Value::boolean(true)},
      {"bool.f", Value::boolean(false)},
      {"str", Value::str("h\xC3\xA9llo \"w\"\n")},
      {"str.empty", Value::str("")},
      {"arr.u8", Value::array(std::vector<uint8_t>{1, 2, 255})},
      {"arr.i8", Value::array(std::vector<int8_t>{-1, 0, 1})},
      {"arr.u16", Value::array(std::vector<uint16_t>{7})},
      {"arr.i16", Value::array(std::vector<int16_t>{-7, 7})},
      {"arr.u32", Value::array(std::vector<uint32_t>{1, 4000000000u})},
      {"arr.i32", Value::i32_array({-5, 0, 5})},
      {"arr.u64", Value::array(std::vector<uint64_t>{0, ~uint64_t{0}})},
      {"arr.i64", Value::array(std::vector<int64_t>{-1})},
      {"arr.f32", Value::f32_array({0.5f, -2.25f})},
      {"arr.f64", Value::array(std::vector<double>{3.5})},
      {"arr.bool", Value::bool_array({true, false, true})},
      {"arr.str", Value::string_array({"a", "", "\xF0\x9F\x98\x80", std::string(300, 'x')})},
      {"arr.empty.u8", Value::empty_array(ValueType::UINT8)},
      {"arr.empty.str", Value::string_array({})},
      {"arr.empty.f64", Value::array(std::vector<double>{})},
  };
}

TEST(GgufWriter, EveryValueTypeRoundTrips) {
  for (uint32_t align : {32u, 64u}) {
    const std::string path = tmp("values.gguf");
    {
      Writer w(path, align);
      for (auto& [k, v] : all_values()) w.set(k, v);
      w.finish();
    }
    auto r = Reader::open(path);
    EXPECT_EQ(r->version(), 3u);
    EXPECT_EQ(r->alignment(), align);
    EXPECT_TRUE(r->tensors().empty());
    const auto expected = all_values();
    ASSERT_EQ(r->metadata().size(), expected.size() + (align == 64 ? 1 : 0));
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(r->metadata()[i].first, expected[i].first);
      EXPECT_EQ(r->metadata()[i].second, expected[i].second) << expected[i].first;
    }
    EXPECT_EQ(r->get_u32("u32"), 4294967295u);
    EXPECT_EQ(r->get_i64("i64"), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(r->get_u32("u8"), 255u);
    EXPECT_THROW(r->get_u32("u64"), Error);  // does not fit
    EXPECT_THROW(r->get_i64("u64"), Error);
    EXPECT_EQ(r->get_f32("f32"), 0.1f);
    EXPECT_EQ(r->get_bool("bool.t"), true);
    EXPECT_EQ(r->get_string("str"), "h\xC3\xA9llo \"w\"\n");
    EXPECT_EQ(r->get_i32_array("arr.i16"), (std::vector<int32_t>{-7, 7}));
    EXPECT_EQ(r->get_i32_array("arr.u8"), (std::vector<int32_t>{1, 2, 255}));
    EXPECT_THROW(r->get_i32_array("arr.u32"), Error);  // 4e9 does not fit int32
    EXPECT_EQ(r->get_f32_array("arr.f32"), (std::vector<float>{0.5f, -2.25f}));
    EXPECT_EQ(r->get_f32_array("arr.f64"), (std::vector<float>{3.5f}));
    EXPECT_EQ(r->get_string_array("arr.str")[2], "\xF0\x9F\x98\x80");
    EXPECT_TRUE(r->get_string_array("arr.empty.str").empty());
    EXPECT_EQ(r->find("arr.empty.u8")->elem_type(), ValueType::UINT8);
    EXPECT_EQ(r->find("arr.empty.u8")->size(), 0u);
    EXPECT_EQ(r->find_f32("nope"), std::nullopt);
    EXPECT_EQ(r->find_bool("bool.f"), false);
  }
}

struct TensorSpec {
  std::string name;
  Type type;
  std::vector<int64_t> ne;
};

std::vector<TensorSpec> mixed_tensors() {
  return {
      {"odd.f32", Type::F32, {7, 3}},
      {"one.f16", Type::F16, {5}},
      {"q8", Type::Q8_0, {64, 3}},
      {"q4k", Type::Q4_K, {256, 2}},
      {"iq4xs.3d", Type::IQ4_XS, {256, 1, 3}},
      {"bf16.4d", Type::BF16, {3, 1, 2, 2}},
      {"q6k", Type::Q6_K, {512}},
      {"q5_1", Type::Q5_1, {32, 5}},
      {"single", Type::F32, {1}},
  };
}

uint64_t bytes_of(const TensorSpec& t) {
  int64_t rows = 1;
  for (size_t d = 1; d < t.ne.size(); ++d) rows *= t.ne[d];
  return quant::row_bytes(t.type, t.ne[0]) * static_cast<uint64_t>(rows);
}

// Writes mixed_tensors() streaming the concatenated data in chunks of `chunk` bytes.
void write_mixed(const std::string& path, uint32_t align, size_t chunk) {
  Writer w(path, align);
  w.set("general.architecture", Value::str("test"));
  std::vector<uint8_t> all;
  uint32_t seed = 1;
  for (const TensorSpec& t : mixed_tensors()) {
    w.add_tensor(t.name, t.type, t.ne);
    auto bytes = pattern(bytes_of(t), seed++);
    all.insert(all.end(), bytes.begin(), bytes.end());
  }
  w.begin_data();
  EXPECT_EQ(w.data_offset() % align, 0u);
  for (size_t at = 0; at < all.size(); at += chunk)
    w.write(all.data() + at, std::min(chunk, all.size() - at));
  EXPECT_EQ(w.bytes_remaining(), 0u);
  w.finish();
}

TEST(GgufWriter, TensorsRoundTrip) {
  for (uint32_t align : {32u, 64u}) {
    for (size_t chunk : {size_t{1}, size_t{7}, size_t{1000}, size_t{1} << 20}) {
      SCOPED_TRACE(testing::Message() << "align " << align << " chunk " << chunk);
      const std::string path = tmp("mixed.gguf");
      write_mixed(path, align, chunk);
      auto r = Reader::open(path);
      EXPECT_EQ(r->alignment(), align);
      const auto specs = mixed_tensors();
      ASSERT_EQ(r->tensors().size(), specs.size());
      uint64_t expect_offset = 0;
      uint32_t seed = 1;
      for (size_t i = 0; i < specs.size(); ++i) {
        const TensorInfo& t = r->tensors()[i];
        EXPECT_EQ(t.name, specs[i].name);
        EXPECT_EQ(t.type, specs[i].type);
        EXPECT_EQ(t.n_dims, static_cast<int>(specs[i].ne.size()));
        for (int d = 0; d < 4; ++d)
          EXPECT_EQ(t.ne[d], d < t.n_dims ? specs[i].ne[static_cast<size_t>(d)] : 1);
        EXPECT_EQ(t.bytes, bytes_of(specs[i]));
        EXPECT_EQ(t.offset, expect_offset);  // contiguous, each padded to the alignment
        EXPECT_EQ(t.file_offset, r->data_offset() + t.offset);
        expect_offset += (t.bytes + align - 1) / align * align;
        const auto want = pattern(t.bytes, seed++);
        EXPECT_EQ(std::memcmp(t.data, want.data(), t.bytes), 0) << t.name;
        EXPECT_EQ(&r->tensor(t.name), &t);
      }
      EXPECT_EQ(std::filesystem::file_size(path), r->data_offset() + expect_offset);
    }
  }
}

TEST(GgufWriter, NoTensorsHasNoPadding) {
  const std::string path = tmp("vocab-only.gguf");
  Writer w(path);
  w.set("tokenizer.ggml.tokens", Value::string_array({"a", "b"}));
  w.finish();
  auto r = Reader::open(path);
  EXPECT_EQ(r->data_offset(), std::filesystem::file_size(path));
}

TEST(GgufWriter, SkipLeavesASparseHole) {
  const std::string path = tmp("sparse.gguf");
  const int64_t rows = 16384;  // 256 x 16384 F32 = 16 MiB
  {
    Writer w(path);
    w.add_tensor("small", Type::F32, {3});
    w.add_tensor("big", Type::F32, {256, rows});
    w.add_tensor("tail", Type::Q8_0, {32});
    w.begin_data();
    const float small[3] = {1, 2, 3};
    w.write(small, sizeof small);
    w.skip(256 * rows * 4 / 2);
    w.write_zeros(256 * rows * 4 / 2);
    w.skip(34);
    w.finish();
  }
  auto r = Reader::open(path);
  EXPECT_EQ(r->tensor("small").data[4], 0);  // 2.0f = 00 00 00 40
  const TensorInfo& big = r->tensor("big");
  EXPECT_EQ(big.data[0], 0);
  EXPECT_EQ(big.data[big.bytes - 1], 0);
  const TensorInfo& tail = r->tensor("tail");
  EXPECT_EQ(tail.file_offset + 64, std::filesystem::file_size(path));  // padded: 34 -> 64
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  // The zeros were written (8 MiB), the skipped half was not.
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t{12} << 20);
}

TEST(GgufWriter, HeaderOnlyModelWithSkip) {
  const std::string path = tmp("nodata.gguf");
  {
    Writer w(path);
    w.add_tensor("w", Type::Q4_K, {4096, 4096});
    w.begin_data();
    w.skip(w.bytes_remaining());
    w.finish();
  }
  auto r = Reader::open(path);
  EXPECT_EQ(r->tensor("w").bytes, 4096u * 4096 / 256 * 144);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t{1} << 20);
}

TEST(GgufWriter, ProtocolErrors) {
  const std::string path = tmp("errors.gguf");
  {
    Writer w(path);
    w.add_tensor("t", Type::F32, {4});
    EXPECT_THROW(w.write("x", 1), Error);  // before begin_data
    EXPECT_THROW(w.add_tensor("t", Type::F32, {4}), Error);
    EXPECT_THROW(w.add_tensor("u", Type::Q8_0, {33}), Error);
    EXPECT_THROW(w.add_tensor("u", Type::F32, {}), Error);
    EXPECT_THROW(w.add_tensor("u", Type::F32, {1, 1, 1, 1, 1}), Error);
    EXPECT_THROW(w.add_tensor("u", Type::F32, {0}), Error);
    EXPECT_THROW(w.add_tensor(std::string(64, 'n'), Type::F32, {1}), Error);
    EXPECT_THROW(w.add_tensor("u", Type::NVFP4, {64}), Error);
    EXPECT_THROW(w.add_tensor("u", Type::F32, {int64_t{1} << 62}), Error);
    EXPECT_THROW(w.set("", Value::u8(1)), Error);
    w.begin_data();
    EXPECT_THROW(w.set("k", Value::u8(1)), Error);
    EXPECT_THROW(w.write("0123456789abcdef0", 17), Error);  // 16 bytes declared
    w.write("0123", 4);
    try {
      w.finish();
      FAIL();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("'t' has 4 of its 16 bytes"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_FALSE(std::filesystem::exists(path));  // an unfinished file is removed
  EXPECT_THROW(Writer(path, 3), Error);
  EXPECT_THROW(Writer(path, 0), Error);
  try {
    Writer w("/nonexistent-dir/x.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x.gguf: cannot create"),
              std::string::npos)
        << e.what();
  }
  {
    Writer w(path, 64);
    w.set("general.alignment", Value::u32(32));
    EXPECT_THROW(w.begin_data(), Error);
  }
  {
    Writer w(path);
    w.set("k", Value::u8(1));
    w.set("j", Value::u8(2));
    w.set("k", Value::str("replaced"));  // replaced in place, order kept
    w.finish();
  }
  auto r = Reader::open(path);
  ASSERT_EQ(r->metadata().size(), 2u);
  EXPECT_EQ(r->metadata()[0].first, "k");
  EXPECT_EQ(r->get_string("k"), "replaced");
}

// ---- gguf-split shard sets -------------------------------------------------------------------

std::string shard_name(const std::string& prefix, int no, int count) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "-%05d-of-%05d.gguf", no, count);
  return prefix + buf;
}

// Writes a 7-tensor model as `count` shards the way gguf-split lays them out: metadata in the
// first shard, split.no / split.count (uint16) and split.tensors.count (int32) in every shard.
void write_split(const std::string& prefix, int count, int32_t claimed_tensors = 7) {
  const int n_tensors = 7;
  for (int s = 0; s < count; ++s) {
    Writer w(shard_name(prefix, s + 1, count));
    if (s == 0) w.set("general.architecture", Value::str("llama"));
    w.set("split.no", Value::u16(static_cast<uint16_t>(s)));
    w.set("split.count", Value::u16(static_cast<uint16_t>(count)));
    w.set("split.tensors.count", Value::i32(claimed_tensors));
    std::vector<int> mine;
    for (int i = 0; i < n_tensors; ++i)
      if (i * count / n_tensors == s) mine.push_back(i);
    for (int i : mine) w.add_tensor("t" + std::to_string(i), Type::F32, {4 + i});
    w.begin_data();
    for (int i : mine) {
      auto bytes = pattern(static_cast<size_t>(4 + i) * 4, static_cast<uint32_t>(i));
      w.write(bytes.data(), bytes.size());
    }
    w.finish();
  }
}

TEST(GgufSplit, OpensAllShards) {
  const std::string prefix = tmp("split-model");
  write_split(prefix, 3);
  auto r = Reader::open(shard_name(prefix, 1, 3));
  EXPECT_EQ(r->shard_count(), 3);
  EXPECT_EQ(r->get_string("general.architecture"), "llama");
  ASSERT_EQ(r->tensors().size(), 7u);
  for (int i = 0; i < 7; ++i) {
    const TensorInfo& t = r->tensor("t" + std::to_string(i));
    EXPECT_EQ(&t, &r->tensors()[static_cast<size_t>(i)]);
    EXPECT_EQ(t.shard, i * 3 / 7);
    EXPECT_EQ(t.file_offset + t.bytes <= r->shard_size(t.shard), true);
    const auto want = pattern(t.bytes, static_cast<uint32_t>(i));
    EXPECT_EQ(std::memcmp(t.data, want.data(), t.bytes), 0);
  }
}

TEST(GgufSplit, Errors) {
  const std::string prefix = tmp("split-err");
  write_split(prefix, 3);
  try {
    Reader::open(shard_name(prefix, 2, 3));
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("shard 2 of 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("open the first shard"), std::string::npos) << msg;
    EXPECT_NE(msg.find("split-err-00001-of-00003.gguf"), std::string::npos) << msg;
  }
  std::filesystem::remove(shard_name(prefix, 3, 3));
  try {
    Reader::open(shard_name(prefix, 1, 3));
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("shard 3 of 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
    EXPECT_NE(msg.find("split-err-00003-of-00003.gguf"), std::string::npos) << msg;
  }
  // A tensor count that does not add up.
  write_split(prefix, 2, 9);
  try {
    Reader::open(shard_name(prefix, 1, 2));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("split.tensors.count"), std::string::npos) << e.what();
  }
  // A renamed first shard cannot find the others.
  write_split(prefix, 2);
  const std::string renamed = tmp("renamed.gguf");
  std::filesystem::copy_file(shard_name(prefix, 1, 2), renamed,
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_THROW(Reader::open(renamed), Error);
}

}  // namespace
}  // namespace straw::gguf
