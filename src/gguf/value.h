// GGUF metadata values: the 13 value types, and Value, one typed value (a scalar, a string, or an
// array of scalars or of strings) as read from a file or built for the Writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace straw::gguf {

// The value type ids stored in GGUF files (gguf.h `enum gguf_type`).
enum class ValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

// "uint8", "int32", "float32", "bool", "string", "array", ...; "unknown" for ids past FLOAT64.
const char* value_type_name(ValueType t);

// True for the ids 0..12.
bool is_valid_value_type(uint32_t id);

// Bytes of one stored value of a fixed-size type; 0 for STRING and ARRAY (variable size).
size_t value_type_size(ValueType t);

// UINT8..INT64 (not BOOL, not the floats).
bool is_integer_type(ValueType t);
bool is_signed_type(ValueType t);
bool is_float_type(ValueType t);

// One metadata value. Scalars keep the exact stored bits; arrays keep their elements as the
// little-endian bytes the file holds (fixed-size element types) or as one byte buffer plus
// offsets (strings), so a 150k-entry vocabulary costs three allocations, not 150k.
class Value {
 public:
  // Scalars.
  static Value u8(uint8_t v);
  static Value i8(int8_t v);
  static Value u16(uint16_t v);
  static Value i16(int16_t v);
  static Value u32(uint32_t v);
  static Value i32(int32_t v);
  static Value u64(uint64_t v);
  static Value i64(int64_t v);
  static Value f32(float v);
  static Value f64(double v);
  static Value boolean(bool v);
  static Value str(std::string v);

  // Arrays. `array(vector<T>)` takes any of uint8_t..int64_t, float, double; bool arrays use
  // bool_array (vector<bool> has no contiguous storage).
  static Value string_array(const std::vector<std::string>& v);
  static Value i32_array(const std::vector<int32_t>& v) { return array(v); }
  static Value f32_array(const std::vector<float>& v) { return array(v); }
  static Value bool_array(const std::vector<bool>& v);
  template <class T>
  static Value array(const std::vector<T>& v) {
    return array_of(element_type_of<T>(), v.data(), v.size());
  }
  // `count` little-endian elements of the fixed-size type `elem` (not STRING, not ARRAY).
  static Value array_of(ValueType elem, const void* data, size_t count);
  // An empty array of `elem` (any type but ARRAY), to be filled with push_string for strings.
  static Value empty_array(ValueType elem);

  // Appends one element to an array of strings (reserve first when the count is known).
  void push_string(std::string_view s);
  void reserve_strings(size_t count, size_t total_bytes);

  ValueType type() const { return type_; }
  // The element type of an array; type() for a scalar or string.
  ValueType elem_type() const { return elem_; }
  // The element count of an array; 1 for a scalar or string.
  size_t size() const { return type_ == ValueType::ARRAY ? count_ : 1; }
  bool is_array() const { return type_ == ValueType::ARRAY; }
  // "uint32", "string", "array[string]", "array[float32]".
  std::string type_string() const;

  // Scalar access. Each throws straw::Error when the value has another type; callers that want
  // a friendly message (the Reader's getters) check type() first.
  std::string_view as_string() const;  // STRING
  bool as_bool() const;                // BOOL (any nonzero byte is true)
  double as_double() const;            // FLOAT32 or FLOAT64
  // Any integer scalar type; nullopt when the stored value does not fit T.
  template <class T>
  std::optional<T> as_int() const {
    return fit<T>(int_scalar());
  }

  // Array element access (bounds and type are checked; throws straw::Error).
  std::string_view str_at(size_t i) const;  // array of STRING
  bool bool_at(size_t i) const;             // array of BOOL
  double float_at(size_t i) const;          // array of FLOAT32 or FLOAT64
  template <class T>
  std::optional<T> int_at(size_t i) const {  // array of any integer type
    return fit<T>(int_elem(i));
  }
  // The raw little-endian elements of an array of a fixed-size type (count * type size bytes).
  const uint8_t* array_data() const;

  // Appends the GGUF encoding of this value: the uint32 type id, then the payload.
  void serialize(std::string& out) const;

  friend bool operator==(const Value&, const Value&) = default;
  friend std::string to_json(const Value& v);
  friend std::string to_display(const Value& v, size_t max_array_items);

 private:
  // An integer as its 64-bit two's-complement bits plus whether the stored type is signed.
  struct Int {
    bool is_signed;
    uint64_t bits;
  };

  Value(ValueType type, ValueType elem) : type_(type), elem_(elem) {}
  static Value scalar(ValueType t, uint64_t bits);
  Int int_scalar() const;
  Int int_elem(size_t i) const;
  void check_elem(size_t i, bool ok, const char* expected) const;

  template <class T>
  static std::optional<T> fit(Int v) {
    if (v.is_signed) {
      const auto s = static_cast<int64_t>(v.bits);
      if (std::in_range<T>(s)) return static_cast<T>(s);
    } else if (std::in_range<T>(v.bits)) {
      return static_cast<T>(v.bits);
    }
    return std::nullopt;
  }

  template <class T>
  static constexpr ValueType element_type_of() {
    if constexpr (std::is_same_v<T, uint8_t>)
      return ValueType::UINT8;
    else if constexpr (std::is_same_v<T, int8_t>)
      return ValueType::INT8;
    else if constexpr (std::is_same_v<T, uint16_t>)
      return ValueType::UINT16;
    else if constexpr (std::is_same_v<T, int16_t>)
      return ValueType::INT16;
    else if constexpr (std::is_same_v<T, uint32_t>)
      return ValueType::UINT32;
    else if constexpr (std::is_same_v<T, int32_t>)
      return ValueType::INT32;
    else if constexpr (std::is_same_v<T, uint64_t>)
      return ValueType::UINT64;
    else if constexpr (std::is_same_v<T, int64_t>)
      return ValueType::INT64;
    else if constexpr (std::is_same_v<T, float>)
      return ValueType::FLOAT32;
    else if constexpr (std::is_same_v<T, double>)
      return ValueType::FLOAT64;
    else
      static_assert(sizeof(T) == 0, "no GGUF array type for this element type");
  }

  ValueType type_;
  ValueType elem_;
  uint64_t bits_ = 0;  // scalars: the stored little-endian bytes, zero-extended
  size_t count_ = 0;   // arrays: element count
  // STRING: the bytes. Arrays of fixed-size types: the elements' little-endian bytes. Arrays of
  // strings: all elements back to back, element i at [offsets_[i], offsets_[i + 1]).
  std::string bytes_;
  std::vector<size_t> offsets_;
};

// The value as JSON, numbers exactly as stored: integers in full, floats with enough digits to
// round-trip (util/json.h json_number; NaN and infinities as null), bools as
// true/false, strings escaped (control characters as \u00XX, invalid UTF-8 bytes as U+FFFD),
// arrays as JSON arrays.
std::string to_json(const Value& v);

// A one-line rendering for people: scalars as in JSON; strings quoted and escaped, cut after 160
// bytes with a note of the full length; arrays show their first `max_array_items` elements and
// then "... (N items)".
std::string to_display(const Value& v, size_t max_array_items);

}  // namespace straw::gguf
