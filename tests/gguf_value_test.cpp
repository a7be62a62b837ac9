// gguf::Value: construction, typed access with range checks, JSON and display rendering.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "gguf/value.h"
#include "straw/error.h"
#include "util/json.h"

namespace straw::gguf {
namespace {

TEST(GgufValue, TypeNames) {
  EXPECT_STREQ(value_type_name(ValueType::UINT32), "uint32");
  EXPECT_STREQ(value_type_name(ValueType::STRING), "string");
  EXPECT_STREQ(value_type_name(ValueType::ARRAY), "array");
  EXPECT_STREQ(value_type_name(ValueType::FLOAT64), "float64");
  EXPECT_STREQ(value_type_name(static_cast<ValueType>(13)), "unknown");
  EXPECT_EQ(Value::u32(1).type_string(), "uint32");
  EXPECT_EQ(Value::string_array({"a"}).type_string(), "array[string]");
  EXPECT_EQ(Value::f32_array({}).type_string(), "array[float32]");
}

TEST(GgufValue, Accessors) {
  const Value v = Value::i16(-300);
  EXPECT_EQ(v.type(), ValueType::INT16);
  EXPECT_EQ(v.elem_type(), ValueType::INT16);
  EXPECT_EQ(v.size(), 1u);
  EXPECT_EQ(v.as_int<int32_t>(), -300);
  EXPECT_EQ(v.as_int<int8_t>(), std::nullopt);
  EXPECT_EQ(v.as_int<uint32_t>(), std::nullopt);
  EXPECT_EQ(Value::u64(~uint64_t{0}).as_int<int64_t>(), std::nullopt);
  EXPECT_EQ(Value::u64(~uint64_t{0}).as_int<uint64_t>(), ~uint64_t{0});
  EXPECT_EQ(Value::u8(200).as_int<int8_t>(), std::nullopt);
  EXPECT_EQ(Value::u8(200).as_int<int16_t>(), 200);
  EXPECT_THROW(v.as_string(), Error);
  EXPECT_THROW(v.as_double(), Error);
  EXPECT_THROW(Value::str("x").as_int<int>(), Error);
  EXPECT_EQ(Value::str("x").as_string(), "x");
  EXPECT_EQ(Value::f64(2.5).as_double(), 2.5);
  EXPECT_TRUE(Value::boolean(true).as_bool());

  const Value a = Value::array(std::vector<int64_t>{-1, int64_t{1} << 40});
  EXPECT_TRUE(a.is_array());
  EXPECT_EQ(a.size(), 2u);
  EXPECT_EQ(a.elem_type(), ValueType::INT64);
  EXPECT_EQ(a.int_at<int32_t>(0), -1);
  EXPECT_EQ(a.int_at<int32_t>(1), std::nullopt);
  EXPECT_THROW(a.int_at<int32_t>(2), Error);
  EXPECT_THROW(a.str_at(0), Error);
  const Value s = Value::string_array({"x", "", "yz"});
  EXPECT_EQ(s.str_at(2), "yz");
  EXPECT_EQ(s.str_at(1), "");
  EXPECT_THROW(s.array_data(), Error);

  Value built = Value::empty_array(ValueType::STRING);
  built.push_string("x");
  built.push_string("");
  built.push_string("yz");
  EXPECT_EQ(built, s);
  EXPECT_NE(built, Value::string_array({"x", "", "y"}));
  EXPECT_THROW(Value::empty_array(ValueType::ARRAY), Error);
  EXPECT_THROW(Value::u8(1).push_string("x"), Error);
}

TEST(GgufValue, Json) {
  EXPECT_EQ(to_json(Value::u8(255)), "255");
  EXPECT_EQ(to_json(Value::i8(-128)), "-128");
  EXPECT_EQ(to_json(Value::i16(-2)), "-2");
  EXPECT_EQ(to_json(Value::u32(4294967295u)), "4294967295");
  EXPECT_EQ(to_json(Value::i32(-7)), "-7");
  EXPECT_EQ(to_json(Value::u64(~uint64_t{0})), "18446744073709551615");
  EXPECT_EQ(to_json(Value::i64(std::numeric_limits<int64_t>::min())), "-9223372036854775808");
  // Floats use util/json's json_number; whatever its digits, they must round-trip exactly.
  for (float f : {0.1f, 1.f, 1e-5f, -3.4e38f, 1.4e-45f}) {
    EXPECT_EQ(to_json(Value::f32(f)), json_number(f));
    EXPECT_EQ(std::strtof(to_json(Value::f32(f)).c_str(), nullptr), f);
  }
  EXPECT_EQ(to_json(Value::f32(1.f)), "1");
  EXPECT_EQ(to_json(Value::f64(0.1)), "0.10000000000000001");
  EXPECT_EQ(to_json(Value::f32(std::nanf(""))), "null");
  EXPECT_EQ(to_json(Value::f64(-std::numeric_limits<double>::infinity())), "null");
  EXPECT_EQ(to_json(Value::boolean(true)), "true");
  EXPECT_EQ(to_json(Value::boolean(false)), "false");
  EXPECT_EQ(to_json(Value::str("a\"b\\c\n\x01\x7f")), "\"a\\\"b\\\\c\\n\\u0001\\u007f\"");
  EXPECT_EQ(to_json(Value::str("\xC3\xA9")), "\"\xC3\xA9\"");
  // Invalid UTF-8 (a lone continuation byte, a truncated sequence) becomes U+FFFD.
  EXPECT_EQ(to_json(Value::str("a\x80z\xE2\x82")), "\"a\xEF\xBF\xBDz\xEF\xBF\xBD\xEF\xBF\xBD\"");
  EXPECT_EQ(to_json(Value::i32_array({1, -2, 3})), "[1, -2, 3]");
  EXPECT_EQ(to_json(Value::f32_array({0.5f, 0.1f})), "[0.5, " + json_number(0.1f) + "]");
  EXPECT_EQ(to_json(Value::bool_array({true, false})), "[true, false]");
  EXPECT_EQ(to_json(Value::string_array({"a", "\t"})), "[\"a\", \"\\t\"]");
  EXPECT_EQ(to_json(Value::string_array({})), "[]");
  EXPECT_EQ(to_json(Value::array(std::vector<uint64_t>{~uint64_t{0}})), "[18446744073709551615]");
  EXPECT_EQ(to_json(Value::array(std::vector<int8_t>{-1})), "[-1]");
}

TEST(GgufValue, Display) {
  EXPECT_EQ(to_display(Value::u32(5), 8), "5");
  EXPECT_EQ(to_display(Value::str("hi"), 8), "\"hi\"");
  std::vector<int32_t> many(1000);
  for (int i = 0; i < 1000; ++i) many[static_cast<size_t>(i)] = i;
  EXPECT_EQ(to_display(Value::i32_array(many), 3), "[0, 1, 2, ... (1000 items)]");
  EXPECT_EQ(to_display(Value::i32_array(many), 0), "[... (1000 items)]");
  EXPECT_EQ(to_display(Value::i32_array({1, 2}), 3), "[1, 2]");
  EXPECT_EQ(to_display(Value::string_array({"a", "b", "c"}), 2), "[\"a\", \"b\", ... (3 items)]");
  const std::string long_text(1000, 'x');
  const std::string shown = to_display(Value::str(long_text), 8);
  EXPECT_LT(shown.size(), 200u);
  EXPECT_NE(shown.find("(1000 bytes)"), std::string::npos);
  // Cutting never splits a UTF-8 sequence.
  std::string utf8;
  for (int i = 0; i < 100; ++i) utf8 += "\xC3\xA9";
  EXPECT_EQ(to_display(Value::str(utf8), 8).find("\xEF\xBF\xBD"), std::string::npos);
}

TEST(GgufValue, Serialize) {
  std::string out;
  Value::u16(0x0102).serialize(out);
  EXPECT_EQ(out, std::string("\x02\x00\x00\x00\x02\x01", 6));
  out.clear();
  Value::string_array({"ab"}).serialize(out);
  EXPECT_EQ(out, std::string("\x09\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00"
                             "\x02\x00\x00\x00\x00\x00\x00\x00"
                             "ab",
                             26));
}

}  // namespace
}  // namespace straw::gguf
