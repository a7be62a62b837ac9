// The ggml tensor types: ids as stored in GGUF files, and the one table of their block geometry.
//
// This is the only place that lists types. Ids are ggml's (ggml.h `enum ggml_type`); removed ids
// (4, 5, 31-33, 36-38) are unknown. `supported` marks the types straw implements (scalar reference
// dequantize at least); a file holding any other known type is refused when it is opened.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace straw::quant {

enum class Type : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
  Q2_0 = 42,
};

struct TypeInfo {
  const char* name;    // ggml's name, upper case as llama.cpp prints it: "IQ4_XS", "Q6_K", "F32"
  Type type;           // the ggml type id
  int64_t block_size;  // elements per block (1 for plain float/int types)
  size_t type_size;    // bytes per block; 0 where straw does not know the layout
  bool supported;      // straw implements it (dequantize; quantize where the format has it)
};

// Table entry for a raw id read from a file; nullptr for ids ggml does not define.
const TypeInfo* find_type(uint32_t id);

// Table entry of a known type (never null).
const TypeInfo& type_info(Type t);

// Lookup by name, case-insensitive ("q4_k" and "Q4_K" both work).
std::optional<Type> type_from_name(std::string_view name);

inline const char* type_name(Type t) { return type_info(t).name; }

// Bytes of a row of n elements (n must be a multiple of the block size).
inline size_t row_bytes(Type t, int64_t n) {
  const TypeInfo& ti = type_info(t);
  return static_cast<size_t>(n / ti.block_size) * ti.type_size;
}

}  // namespace straw::quant
