#include "gguf/value.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "util/json.h"
#include "util/str.h"

namespace straw::gguf {

static_assert(std::endian::native == std::endian::little,
              "straw reads GGUF's little-endian values by copying bytes: little-endian hosts only");

namespace {

constexpr const char* kTypeNames[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                      "int32",  "float32", "bool",   "string", "array",
                                      "uint64", "int64",   "float64"};
constexpr size_t kTypeSizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

// Strings longer than this are cut in to_display.
constexpr size_t kDisplayStringMax = 160;

uint32_t id(ValueType t) {
  return static_cast<uint32_t>(t);
}

uint64_t load_bits(const uint8_t* p, size_t n) {
  uint64_t bits = 0;
  std::memcpy(&bits, p, n);  // little-endian host: the low n bytes
  return bits;
}

// The integer's bits sign-extended from `size` bytes.
uint64_t sign_extend(uint64_t bits, size_t size) {
  if (size >= 8) return bits;
  const unsigned shift = static_cast<unsigned>(64 - 8 * size);
  return static_cast<uint64_t>(static_cast<int64_t>(bits << shift) >> shift);
}

double float_from_bits(ValueType t, uint64_t bits) {
  if (t == ValueType::FLOAT32) return std::bit_cast<float>(static_cast<uint32_t>(bits));
  return std::bit_cast<double>(bits);
}

void append_u32(std::string& out, uint32_t v) {
  out.append(reinterpret_cast<const char*>(&v), 4);
}
void append_u64(std::string& out, uint64_t v) {
  out.append(reinterpret_cast<const char*>(&v), 8);
}

// One fixed-size element (or scalar) as JSON.
std::string scalar_json(ValueType t, uint64_t bits) {
  switch (t) {
    case ValueType::BOOL:
      return bits ? "true" : "false";
    case ValueType::FLOAT32:
      return json_number(std::bit_cast<float>(static_cast<uint32_t>(bits)));
    case ValueType::FLOAT64:
      return json_number(std::bit_cast<double>(bits));
    default:
      if (is_signed_type(t))
        return std::to_string(static_cast<int64_t>(sign_extend(bits, value_type_size(t))));
      return std::to_string(bits);
  }
}

// A string cut to at most `max` bytes without splitting a UTF-8 sequence.
std::string_view utf8_prefix(std::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

std::string display_string(std::string_view s) {
  if (s.size() <= kDisplayStringMax) return json_string(s);
  return json_string(utf8_prefix(s, kDisplayStringMax)) + "... (" + std::to_string(s.size()) +
         " bytes)";
}

}  // namespace

const char* value_type_name(ValueType t) {
  return is_valid_value_type(id(t)) ? kTypeNames[id(t)] : "unknown";
}

bool is_valid_value_type(uint32_t type_id) {
  return type_id <= id(ValueType::FLOAT64);
}

size_t value_type_size(ValueType t) {
  return is_valid_value_type(id(t)) ? kTypeSizes[id(t)] : 0;
}

bool is_integer_type(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::UINT16:
    case ValueType::INT16:
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::UINT64:
    case ValueType::INT64:
      return true;
    default:
      return false;
  }
}

bool is_signed_type(ValueType t) {
  return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 ||
         t == ValueType::INT64;
}

bool is_float_type(ValueType t) {
  return t == ValueType::FLOAT32 || t == ValueType::FLOAT64;
}

// ---- construction ----------------------------------------------------------------------------

Value Value::scalar(ValueType t, uint64_t bits) {
  Value v(t, t);
  v.bits_ = bits;
  return v;
}

Value Value::u8(uint8_t v) {
  return scalar(ValueType::UINT8, v);
}
Value Value::i8(int8_t v) {
  return scalar(ValueType::INT8, static_cast<uint8_t>(v));
}
Value Value::u16(uint16_t v) {
  return scalar(ValueType::UINT16, v);
}
Value Value::i16(int16_t v) {
  return scalar(ValueType::INT16, static_cast<uint16_t>(v));
}
Value Value::u32(uint32_t v) {
  return scalar(ValueType::UINT32, v);
}
Value Value::i32(int32_t v) {
  return scalar(ValueType::INT32, static_cast<uint32_t>(v));
}
Value Value::u64(uint64_t v) {
  return scalar(ValueType::UINT64, v);
}
Value Value::i64(int64_t v) {
  return scalar(ValueType::INT64, static_cast<uint64_t>(v));
}
Value Value::f32(float v) {
  return scalar(ValueType::FLOAT32, std::bit_cast<uint32_t>(v));
}
Value Value::f64(double v) {
  return scalar(ValueType::FLOAT64, std::bit_cast<uint64_t>(v));
}
Value Value::boolean(bool v) {
  return scalar(ValueType::BOOL, v ? 1 : 0);
}

Value Value::str(std::string s) {
  Value v(ValueType::STRING, ValueType::STRING);
  v.bytes_ = std::move(s);
  return v;
}

Value Value::empty_array(ValueType elem) {
  if (elem == ValueType::ARRAY || !is_valid_value_type(id(elem)))
    fail("gguf: cannot make an array of ", value_type_name(elem), " (type id ", id(elem), ")");
  Value v(ValueType::ARRAY, elem);
  if (elem == ValueType::STRING) v.offsets_.push_back(0);
  return v;
}

Value Value::string_array(const std::vector<std::string>& strings) {
  Value v = empty_array(ValueType::STRING);
  size_t total = 0;
  for (const std::string& s : strings) total += s.size();
  v.reserve_strings(strings.size(), total);
  for (const std::string& s : strings) v.push_string(s);
  return v;
}

Value Value::bool_array(const std::vector<bool>& b) {
  Value v = empty_array(ValueType::BOOL);
  v.bytes_.reserve(b.size());
  for (bool x : b) v.bytes_.push_back(x ? 1 : 0);
  v.count_ = b.size();
  return v;
}

Value Value::array_of(ValueType elem, const void* data, size_t count) {
  Value v = empty_array(elem);
  const size_t size = value_type_size(elem);
  if (size == 0)
    fail("gguf: array_of needs a fixed-size element type, not ", value_type_name(elem));
  if (count > 0) v.bytes_.assign(static_cast<const char*>(data), count * size);
  v.count_ = count;
  return v;
}

void Value::push_string(std::string_view s) {
  if (type_ != ValueType::ARRAY || elem_ != ValueType::STRING)
    fail("gguf: push_string on a value of type ", type_string());
  bytes_.append(s);
  offsets_.push_back(bytes_.size());
  ++count_;
}

void Value::reserve_strings(size_t count, size_t total_bytes) {
  bytes_.reserve(total_bytes);
  offsets_.reserve(count + 1);
}

// ---- access ----------------------------------------------------------------------------------

std::string Value::type_string() const {
  if (type_ != ValueType::ARRAY) return value_type_name(type_);
  return std::string("array[") + value_type_name(elem_) + "]";
}

std::string_view Value::as_string() const {
  if (type_ != ValueType::STRING) fail("gguf: value has type ", type_string(), ", expected string");
  return bytes_;
}

bool Value::as_bool() const {
  if (type_ != ValueType::BOOL) fail("gguf: value has type ", type_string(), ", expected bool");
  return bits_ != 0;
}

double Value::as_double() const {
  if (!is_float_type(type_)) fail("gguf: value has type ", type_string(), ", expected a float");
  return float_from_bits(type_, bits_);
}

Value::Int Value::int_scalar() const {
  if (!is_integer_type(type_))
    fail("gguf: value has type ", type_string(), ", expected an integer");
  return {is_signed_type(type_),
          is_signed_type(type_) ? sign_extend(bits_, value_type_size(type_)) : bits_};
}

void Value::check_elem(size_t i, bool ok, const char* expected) const {
  if (type_ != ValueType::ARRAY || !ok)
    fail("gguf: value has type ", type_string(), ", expected ", expected);
  if (i >= count_) fail("gguf: array index ", i, " is out of range (", count_, " elements)");
}

Value::Int Value::int_elem(size_t i) const {
  check_elem(i, is_integer_type(elem_), "an array of integers");
  const size_t size = value_type_size(elem_);
  const uint64_t bits = load_bits(reinterpret_cast<const uint8_t*>(bytes_.data()) + i * size, size);
  return {is_signed_type(elem_), is_signed_type(elem_) ? sign_extend(bits, size) : bits};
}

std::string_view Value::str_at(size_t i) const {
  check_elem(i, elem_ == ValueType::STRING, "array[string]");
  return std::string_view(bytes_).substr(offsets_[i], offsets_[i + 1] - offsets_[i]);
}

bool Value::bool_at(size_t i) const {
  check_elem(i, elem_ == ValueType::BOOL, "array[bool]");
  return bytes_[i] != 0;
}

double Value::float_at(size_t i) const {
  check_elem(i, is_float_type(elem_), "an array of floats");
  const size_t size = value_type_size(elem_);
  return float_from_bits(
      elem_, load_bits(reinterpret_cast<const uint8_t*>(bytes_.data()) + i * size, size));
}

const uint8_t* Value::array_data() const {
  if (type_ != ValueType::ARRAY || elem_ == ValueType::STRING)
    fail("gguf: value has type ", type_string(), ", expected an array of fixed-size elements");
  return reinterpret_cast<const uint8_t*>(bytes_.data());
}

void Value::serialize(std::string& out) const {
  append_u32(out, id(type_));
  if (type_ == ValueType::STRING) {
    append_u64(out, bytes_.size());
    out += bytes_;
  } else if (type_ == ValueType::ARRAY) {
    append_u32(out, id(elem_));
    append_u64(out, count_);
    if (elem_ != ValueType::STRING) {
      out += bytes_;
    } else {
      for (size_t i = 0; i < count_; ++i) {
        append_u64(out, offsets_[i + 1] - offsets_[i]);
        out.append(bytes_, offsets_[i], offsets_[i + 1] - offsets_[i]);
      }
    }
  } else {
    out.append(reinterpret_cast<const char*>(&bits_), value_type_size(type_));
  }
}

// ---- rendering -------------------------------------------------------------------------------

namespace {

// Elements [0, n) of an array, each rendered by `elem`, comma separated.
template <class F>
void append_elements(std::string& out, const Value& v, size_t n, F&& elem) {
  for (size_t i = 0; i < n; ++i) {
    if (i) out += ", ";
    out += elem(v, i);
  }
}

std::string elem_json(const Value& v, size_t i) {
  if (v.elem_type() == ValueType::STRING) return json_string(v.str_at(i));
  const size_t size = value_type_size(v.elem_type());
  return scalar_json(v.elem_type(), load_bits(v.array_data() + i * size, size));
}

std::string elem_display(const Value& v, size_t i) {
  if (v.elem_type() == ValueType::STRING) return display_string(v.str_at(i));
  return elem_json(v, i);
}

}  // namespace

std::string to_json(const Value& v) {
  if (v.type() == ValueType::STRING) return json_string(v.as_string());
  if (!v.is_array()) return scalar_json(v.type(), v.bits_);
  std::string out = "[";
  append_elements(out, v, v.size(), elem_json);
  out += "]";
  return out;
}

std::string to_display(const Value& v, size_t max_array_items) {
  if (v.type() == ValueType::STRING) return display_string(v.as_string());
  if (!v.is_array()) return scalar_json(v.type(), v.bits_);
  std::string out = "[";
  const size_t n = std::min(v.size(), max_array_items);
  append_elements(out, v, n, elem_display);
  if (n < v.size()) out += str(n ? ", " : "", "... (", v.size(), " items)");
  out += "]";
  return out;
}

}  // namespace straw::gguf
