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

// Geometry from the formats' definitions (ggml-common.h block structs); each supported type's
// header static_asserts its block size against this table (in quant/formats.h).
inline constexpr TypeInfo kTypeTable[] = {
    {"F32", Type::F32, 1, 4, true},
    {"F16", Type::F16, 1, 2, true},
    {"Q4_0", Type::Q4_0, 32, 18, true},
    {"Q4_1", Type::Q4_1, 32, 20, true},
    {"Q5_0", Type::Q5_0, 32, 22, true},
    {"Q5_1", Type::Q5_1, 32, 24, true},
    {"Q8_0", Type::Q8_0, 32, 34, true},
    {"Q8_1", Type::Q8_1, 32, 36, true},
    {"Q2_K", Type::Q2_K, 256, 84, true},
    {"Q3_K", Type::Q3_K, 256, 110, true},
    {"Q4_K", Type::Q4_K, 256, 144, true},
    {"Q5_K", Type::Q5_K, 256, 176, true},
    {"Q6_K", Type::Q6_K, 256, 210, true},
    {"Q8_K", Type::Q8_K, 256, 292, true},
    {"IQ2_XXS", Type::IQ2_XXS, 256, 66, false},
    {"IQ2_XS", Type::IQ2_XS, 256, 74, false},
    {"IQ3_XXS", Type::IQ3_XXS, 256, 98, false},
    {"IQ1_S", Type::IQ1_S, 256, 50, false},
    {"IQ4_NL", Type::IQ4_NL, 32, 18, true},
    {"IQ3_S", Type::IQ3_S, 256, 110, false},
    {"IQ2_S", Type::IQ2_S, 256, 82, false},
    {"IQ4_XS", Type::IQ4_XS, 256, 136, true},
    {"I8", Type::I8, 1, 1, false},
    {"I16", Type::I16, 1, 2, false},
    {"I32", Type::I32, 1, 4, false},
    {"I64", Type::I64, 1, 8, false},
    {"F64", Type::F64, 1, 8, false},
    {"IQ1_M", Type::IQ1_M, 256, 56, false},
    {"BF16", Type::BF16, 1, 2, true},
    {"TQ1_0", Type::TQ1_0, 256, 54, false},
    {"TQ2_0", Type::TQ2_0, 256, 66, false},
    {"MXFP4", Type::MXFP4, 32, 17, false},
    {"NVFP4", Type::NVFP4, 0, 0, false},
    {"Q1_0", Type::Q1_0, 0, 0, false},
    {"Q2_0", Type::Q2_0, 0, 0, false},
};

// Compile-time lookup, for static_asserts on block structs.
constexpr const TypeInfo& type_info_ce(Type t) {
  for (const TypeInfo& ti : kTypeTable)
    if (ti.type == t) return ti;
  return kTypeTable[0];
}

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
