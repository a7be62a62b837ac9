// Anonymous memory for the CPU backend's weight copies: mmap'd chunks of 256 MB (or one weight's
// size, if larger) on 2 MB boundaries with MADV_HUGEPAGE, carved sequentially, freed together.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace straw::cpu {

class WeightArena {
 public:
  WeightArena() = default;
  ~WeightArena();
  WeightArena(const WeightArena&) = delete;
  WeightArena& operator=(const WeightArena&) = delete;

  // 64-byte aligned, zero-filled memory; null when the mapping fails.
  void* alloc(size_t bytes);
  bool huge_pages() const { return huge_pages_; }

 private:
  struct Chunk {
    uint8_t* base;
    size_t size;
    size_t used;
  };
  std::vector<Chunk> chunks_;
  bool huge_pages_ = false;
};

// The RAM straw may count on, in bytes: the environment variable STRAW_RAM_LIMIT when set (a size:
// "8GiB", "512M", a byte count; for tests and to cap straw's share of a machine), else MemAvailable
// from /proc/meminfo (0 when unknown). The one place that reads either; `source` receives
// "STRAW_RAM_LIMIT" or "MemAvailable". Throws straw::Error when STRAW_RAM_LIMIT is not a size.
size_t available_memory(std::string* source = nullptr);

}  // namespace straw::cpu
