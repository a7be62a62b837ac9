// Test helpers for the GGUF tests: a raw little-endian byte builder for hand-made (and
// deliberately broken) files, and a check that parsing a buffer fails with given words.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf.h"
#include "straw/error.h"

namespace straw::gguf::fixture {

// Appends GGUF primitives; every method returns *this for chaining.
struct Bytes {
  std::string b;

  Bytes& raw(std::string_view s) {
    b.append(s);
    return *this;
  }
  Bytes& u8(uint8_t v) {
    b.push_back(static_cast<char>(v));
    return *this;
  }
  Bytes& u32(uint32_t v) {
    b.append(reinterpret_cast<const char*>(&v), 4);
    return *this;
  }
  Bytes& u64(uint64_t v) {
    b.append(reinterpret_cast<const char*>(&v), 8);
    return *this;
  }
  Bytes& str(std::string_view s) { return u64(s.size()).raw(s); }
  // The fixed header: magic, version, n_tensors, n_kv.
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
  }
  Bytes& kv_u32(std::string_view key, uint32_t v) {
    return str(key).u32(static_cast<uint32_t>(ValueType::UINT32)).u32(v);
  }
  Bytes& kv_str(std::string_view key, std::string_view v) {
    return str(key).u32(static_cast<uint32_t>(ValueType::STRING)).str(v);
  }
  // A tensor info: name, n_dims, ne[], ggml type id, offset.
  Bytes& tensor(std::string_view name, std::vector<int64_t> ne, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (int64_t n : ne) u64(static_cast<uint64_t>(n));
    return u32(type).u64(offset);
  }
  Bytes& pad(size_t align) {
    b.resize((b.size() + align - 1) / align * align, '\0');
    return *this;
  }
  Bytes& zeros(size_t n) {
    b.append(n, '\0');
    return *this;
  }
  size_t size() const { return b.size(); }
};

// A Reader over an exactly sized heap copy of some bytes (so AddressSanitizer sees any overread);
// the buffer lives as long as the Reader (moving a vector keeps its storage).
struct Parsed {
  std::vector<uint8_t> buf;
  std::unique_ptr<Reader> reader;
  const Reader* operator->() const { return reader.get(); }
};

inline Parsed parse(const std::string& bytes, const std::string& name = "t.gguf") {
  Parsed p;
  p.buf.assign(bytes.begin(), bytes.end());
  p.reader = Reader::from_memory(p.buf.data(), p.buf.size(), name);
  return p;
}

// The error message of parsing `bytes`, or "" (plus a test failure) when it parses.
inline std::string parse_error(const std::string& bytes) {
  std::vector<uint8_t> copy(bytes.begin(), bytes.end());
  try {
    Reader::from_memory(copy.data(), copy.size(), "t.gguf");
  } catch (const straw::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "parsing succeeded, expected an error";
  return "";
}

// Expects parsing to fail with a message holding every word in `words`.
#define EXPECT_GGUF_ERROR(bytes, ...)                                                       \
  do {                                                                                      \
    const std::string msg_ = ::straw::gguf::fixture::parse_error(bytes);                    \
    for (std::string_view w_ : std::initializer_list<std::string_view>{__VA_ARGS__})        \
      EXPECT_NE(msg_.find(w_), std::string::npos) << "missing '" << w_ << "' in: " << msg_; \
  } while (0)

}  // namespace straw::gguf::fixture
