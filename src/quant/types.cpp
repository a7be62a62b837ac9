#include "quant/types.h"

#include <array>
#include <cctype>

#include "util/str.h"

namespace straw::quant {
namespace {

// Geometry from the formats' definitions (ggml-common.h block structs); each supported type's
// header static_asserts its block size against this table (see quant/formats.h).
constexpr TypeInfo kTypes[] = {
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

constexpr uint32_t kMaxId = 43;

constexpr std::array<int, kMaxId> make_index() {
  std::array<int, kMaxId> idx{};
  for (auto& i : idx) i = -1;
  for (size_t i = 0; i < std::size(kTypes); ++i) idx[static_cast<uint32_t>(kTypes[i].type)] = int(i);
  return idx;
}
constexpr std::array<int, kMaxId> kIndex = make_index();

}  // namespace

const TypeInfo* find_type(uint32_t id) {
  if (id >= kMaxId || kIndex[id] < 0) return nullptr;
  return &kTypes[kIndex[id]];
}

const TypeInfo& type_info(Type t) {
  const TypeInfo* ti = find_type(static_cast<uint32_t>(t));
  if (!ti) fail("internal error: type id ", static_cast<uint32_t>(t), " is not in the type table");
  return *ti;
}

std::optional<Type> type_from_name(std::string_view name) {
  for (const TypeInfo& ti : kTypes) {
    std::string_view n = ti.name;
    if (n.size() != name.size()) continue;
    bool eq = true;
    for (size_t i = 0; i < n.size() && eq; ++i)
      eq = std::toupper(static_cast<unsigned char>(name[i])) == n[i];
    if (eq) return ti.type;
  }
  return std::nullopt;
}

}  // namespace straw::quant
