#include "quant/types.h"

#include <array>
#include <cctype>

#include "util/str.h"

namespace straw::quant {
namespace {

constexpr uint32_t kMaxId = 43;

constexpr std::array<int, kMaxId> make_index() {
  std::array<int, kMaxId> idx{};
  for (auto& i : idx) i = -1;
  for (size_t i = 0; i < std::size(kTypeTable); ++i) idx[static_cast<uint32_t>(kTypeTable[i].type)] = int(i);
  return idx;
}
constexpr std::array<int, kMaxId> kIndex = make_index();

}  // namespace

const TypeInfo* find_type(uint32_t id) {
  if (id >= kMaxId || kIndex[id] < 0) return nullptr;
  return &kTypeTable[kIndex[id]];
}

const TypeInfo& type_info(Type t) {
  const TypeInfo* ti = find_type(static_cast<uint32_t>(t));
  if (!ti) fail("internal error: type id ", static_cast<uint32_t>(t), " is not in the type table");
  return *ti;
}

std::optional<Type> type_from_name(std::string_view name) {
  for (const TypeInfo& ti : kTypeTable) {
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
