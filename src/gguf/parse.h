// Internal: the GGUF parser, a bounded cursor over one file's bytes shared by Reader::open (mmap)
// and Reader::from_memory. It validates everything the Reader promises (see gguf.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gguf/gguf.h"

namespace straw::gguf::detail {

struct ParsedFile {
  uint32_t version = 0;
  uint32_t alignment = kDefaultAlignment;
  uint64_t data_offset = 0;
  std::vector<std::pair<std::string, Value>> metadata;  // file order
  std::vector<uint64_t> value_offsets;                  // of each value's type field
  std::vector<TensorInfo> tensors;                      // file order; shard and data filled in
  std::vector<uint64_t> info_offsets;                   // of each tensor info
};

// Parses and validates one GGUF file held in data[0, size). `name` is the file name used in
// messages; `shard` is stored in every TensorInfo. Throws straw::Error.
ParsedFile parse(const uint8_t* data, size_t size, const std::string& name, int shard);

// "FILE: what (at byte offset N)" followed by "; remedy" when remedy is not empty.
[[noreturn]] void fail_at(const std::string& name, uint64_t offset, const std::string& what,
                          std::string_view remedy);

// The remedy for structural damage that is not plain truncation.
inline constexpr std::string_view kCorrupt =
    "the file is corrupt or was not written by a GGUF writer: re-download or re-convert it";
inline constexpr std::string_view kTruncated =
    "the file is truncated: re-download or re-convert it";

}  // namespace straw::gguf::detail
