// Minimal JSON output helpers (straw writes JSON; it never needs to read it).
#pragma once

#include <string>
#include <string_view>

namespace straw {

// A JSON string literal with quotes. Control characters become \u00XX; bytes that are not valid
// UTF-8 are replaced by U+FFFD so that the output is always valid JSON.
std::string json_string(std::string_view s);

// A JSON number: %.17g of the (widened) value, which round-trips exactly through a float64
// parser. "NaN"/"Infinity" are not JSON, so non-finite values are written as null.
std::string json_number(float v);
std::string json_number(double v);

}  // namespace straw
