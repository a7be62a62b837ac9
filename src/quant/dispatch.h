// The one place that turns a runtime quant::Type into a format template argument.
//
//   quant::dispatch(t, [&]<class F>(quant::FormatTag<F>) { kernel<F>(...); });
//   quant::dispatch(t, [&](auto tag) { using F = typename decltype(tag)::type; ... });
//
// fn is called once with FormatTag<F>{} for the format implementing t, and dispatch returns what fn
// returns (every instantiation must return the same type). Types that straw does not implement
// (IQ2_*, IQ3_*, I8.., MXFP4, ...) throw straw::Error naming the type. To handle only a subset
// (say, formats with a quantizer), test the format inside fn with `if constexpr`.
#pragma once

#include <utility>

#include "quant/formats.h"
#include "util/str.h"

namespace straw::quant {

template <class Fn>
decltype(auto) dispatch(Type t, Fn&& fn) {
  switch (t) {
    case Type::F32:
      return std::forward<Fn>(fn)(FormatTag<F32>{});
    case Type::F16:
      return std::forward<Fn>(fn)(FormatTag<F16>{});
    case Type::BF16:
      return std::forward<Fn>(fn)(FormatTag<BF16>{});
    case Type::Q4_0:
      return std::forward<Fn>(fn)(FormatTag<Q4_0>{});
    case Type::Q4_1:
      return std::forward<Fn>(fn)(FormatTag<Q4_1>{});
    case Type::Q5_0:
      return std::forward<Fn>(fn)(FormatTag<Q5_0>{});
    case Type::Q5_1:
      return std::forward<Fn>(fn)(FormatTag<Q5_1>{});
    case Type::Q8_0:
      return std::forward<Fn>(fn)(FormatTag<Q8_0>{});
    case Type::Q8_1:
      return std::forward<Fn>(fn)(FormatTag<Q8_1>{});
    case Type::Q2_K:
      return std::forward<Fn>(fn)(FormatTag<Q2K>{});
    case Type::Q3_K:
      return std::forward<Fn>(fn)(FormatTag<Q3K>{});
    case Type::Q4_K:
      return std::forward<Fn>(fn)(FormatTag<Q4K>{});
    case Type::Q5_K:
      return std::forward<Fn>(fn)(FormatTag<Q5K>{});
    case Type::Q6_K:
      return std::forward<Fn>(fn)(FormatTag<Q6K>{});
    case Type::Q8_K:
      return std::forward<Fn>(fn)(FormatTag<Q8K>{});
    case Type::IQ4_NL:
      return std::forward<Fn>(fn)(FormatTag<IQ4NL>{});
    case Type::IQ4_XS:
      return std::forward<Fn>(fn)(FormatTag<IQ4XS>{});
    default:
      break;
  }
  const TypeInfo* ti = find_type(static_cast<uint32_t>(t));
  fail("tensor type ", ti ? ti->name : "unknown", " (ggml id ", static_cast<uint32_t>(t),
       ") is not supported by straw; supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K "
       "Q4_K Q5_K Q6_K IQ4_NL IQ4_XS (requantize the model to one of these)");
}

}  // namespace straw::quant
