// Anonymous memory for the CPU backend's weight copies: mmap'd chunks of 256 MB (or one weight's
// size, if larger) on 2 MB boundaries with MADV_HUGEPAGE, carved sequentially, freed together.
#pragma once

#include <cstddef>
#include <cstdint>
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

// MemAvailable from /proc/meminfo in bytes (0 when unknown).
size_t available_memory();

}  // namespace straw::cpu
