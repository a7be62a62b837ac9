// KV cache element types, shared by the ops (cache rows, attention) and the planner (sizes).
#pragma once

#include <cstddef>
#include <cstdint>

namespace straw::ops {

// Q8_0: each row is a sequence of Q8_0 blocks (fp16 scale + 32 int8, 34 bytes); Q4_0: of Q4_0
// blocks (fp16 scale + 16 bytes of nibbles, 18 bytes). With either, head sizes must be multiples
// of 32 so that every head starts a block.
enum class KvType { F32, F16, Q8_0, Q4_0 };

inline bool kv_quantized(KvType t) {
  return t == KvType::Q8_0 || t == KvType::Q4_0;
}

// Bytes of one cache row of `width` elements (Q8_0 and Q4_0: whole blocks of 32); also the byte
// offset of element `width` inside a row when width is a multiple of 32.
inline size_t kv_row_bytes(KvType t, int64_t width) {
  const size_t blocks = size_t(width + 31) / 32;
  switch (t) {
    case KvType::F32:
      return size_t(width) * 4;
    case KvType::F16:
      return size_t(width) * 2;
    case KvType::Q8_0:
      return blocks * 34;
    case KvType::Q4_0:
      return blocks * 18;
  }
  return 0;
}

// llama.cpp's names (-ctk / -ctv values).
inline const char* kv_type_name(KvType t) {
  switch (t) {
    case KvType::F32:
      return "f32";
    case KvType::F16:
      return "f16";
    case KvType::Q8_0:
      return "q8_0";
    case KvType::Q4_0:
      return "q4_0";
  }
  return "?";
}

}  // namespace straw::ops
