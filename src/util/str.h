// String helpers shared by every layer: concatenation for error messages, byte sizes for humans.
#pragma once

#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <utility>

#include "straw/error.h"

namespace straw {

// str("tensor ", name, " at offset ", off) -> one string; any streamable arguments.
template <class... Args>
std::string str(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

// Throws straw::Error with the concatenated message.
template <class... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str(std::forward<Args>(args)...));
}

// "1.50 GiB", "512.00 MiB", "17 B": binary units, for tables and messages.
std::string human_bytes(uint64_t bytes);

// "8GiB", "7.5G", "512MiB", "1000000" -> bytes (binary units; B, K/KiB/KB, M, G, T, any case);
// nullopt when the text is not such a size.
std::optional<uint64_t> parse_byte_size(const std::string& s);

}  // namespace straw
