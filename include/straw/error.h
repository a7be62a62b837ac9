// straw: the one exception type the library throws.
//
// Contract: every failure caused by user input (a malformed file, an unsupported type or
// architecture, bad options, a budget that is too small) surfaces as straw::Error with a message
// that says what is wrong, where (file, tensor, byte offset) and, where there is something to do,
// what to do. The library never calls exit() or abort() on user input.
#pragma once

#include <stdexcept>
#include <string>

namespace straw {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace straw
