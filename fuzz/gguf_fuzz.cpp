// libFuzzer target for the GGUF reader: any input must either parse or throw straw::Error; a
// parsed file must have every metadata value renderable and every tensor's bytes readable.
#include <cstddef>
#include <cstdint>
#include <string>

#include "gguf/gguf.h"
#include "straw/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace straw::gguf;
  std::unique_ptr<Reader> r;
  try {
    r = Reader::from_memory(data, size, "fuzz.gguf");
  } catch (const straw::Error&) {
    return 0;
  }
  size_t sink = r->version() + r->alignment() + r->data_offset();
  for (const auto& [key, value] : r->metadata()) {
    sink += key.size() + to_json(value).size() + to_display(value, 8).size();
    sink += value.size() + static_cast<size_t>(value.type_string().size());
    if (r->find(key) != &value) __builtin_trap();
  }
  for (const TensorInfo& t : r->tensors()) {
    if (t.data < data || t.bytes == 0 || t.file_offset + t.bytes > size) __builtin_trap();
    sink += t.data[0] + t.data[t.bytes - 1] + static_cast<size_t>(t.n_elements());
    if (r->find_tensor(t.name) != &t) __builtin_trap();
  }
  // The typed getters on whatever keys exist: they may throw, never crash.
  for (const auto& [key, value] : r->metadata()) {
    try {
      sink += r->get_u32(key);
    } catch (const straw::Error&) {
    }
    try {
      sink += r->get_string_array(key).size();
    } catch (const straw::Error&) {
    }
    try {
      sink += r->get_i32_array(key).size() + r->get_f32_array(key).size();
    } catch (const straw::Error&) {
    }
  }
  volatile size_t keep = sink;
  (void)keep;
  return 0;
}
