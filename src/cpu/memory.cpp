// CPU backend memory: 64-byte aligned, zeroed host buffers for activations and KV caches, and the
// arena that holds the copied / repacked weights in anonymous memory with transparent huge pages.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <string>

#include "cpu/cpu_backend.h"
#include "cpu/weight_arena.h"
#include "util/str.h"

namespace straw::cpu {

namespace {

constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kChunk = size_t(256)
                          << 20;  // arena chunk: large, so most weights share huge pages

// size bytes (a multiple of kHugePage) of zeroed anonymous memory starting on a 2 MB boundary,
// advised for transparent huge pages (huge, when given: whether the kernel took the advice); null
// when mmap fails. Over-allocates by one huge page and trims, so that whole huge pages back it.
uint8_t* map_huge(size_t size, bool* huge = nullptr) {
  void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const auto addr = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t start = (addr + kHugePage - 1) / kHugePage * kHugePage;
  if (start > addr) munmap(raw, start - addr);
  const size_t tail = addr + size + kHugePage - (start + size);
  if (tail) munmap(reinterpret_cast<void*>(start + size), tail);
  auto* base = reinterpret_cast<uint8_t*>(start);
  bool advised = false;
#ifdef MADV_HUGEPAGE
  advised = madvise(base, size, MADV_HUGEPAGE) == 0;
#endif
  if (huge) *huge = advised;
  return base;
}

class HostBuffer final : public ops::Buffer {
 public:
  explicit HostBuffer(size_t bytes) : size_(bytes) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded >= kHugePage) {
      // Large buffers (KV caches) on huge pages: attention sweeps the whole cache every step,
      // and with 4 KB pages a 1.5B model's f16 cache changes page every 8 rows of a layer, a TLB
      // miss each (decode attention ran 1.5x slower at depth 16384 on 4 KB pages).
      mapped_ = (rounded + kHugePage - 1) / kHugePage * kHugePage;
      data_ = map_huge(mapped_);
    } else {
      data_ = std::aligned_alloc(64, rounded ? rounded : 64);
      if (data_) std::memset(data_, 0, rounded);
    }
    if (!data_)
      fail("out of memory: cannot allocate ", human_bytes(bytes),
           " of host memory (use a smaller --ctx or --ubatch)");
  }
  ~HostBuffer() override {
    if (mapped_)
      munmap(data_, mapped_);
    else
      std::free(data_);
  }
  void* data() override { return data_; }
  size_t size() const override { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_;
  size_t mapped_ = 0;  // bytes mapped (huge-page buffers), 0 for malloc'd ones
};

}  // namespace

size_t available_memory(std::string* source) {
  if (const char* limit = std::getenv("STRAW_RAM_LIMIT"); limit && *limit) {
    const std::optional<uint64_t> v = parse_byte_size(limit);
    if (!v)
      fail("the environment variable STRAW_RAM_LIMIT='", limit,
           "' is not a size (examples: 8GiB, 512MiB, 1000000); unset it to use MemAvailable");
    if (source) *source = "STRAW_RAM_LIMIT";
    return size_t(*v);
  }
  if (source) *source = "MemAvailable";
  std::ifstream in("/proc/meminfo");
  std::string key;
  size_t value = 0;
  std::string unit;
  while (in >> key >> value) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return value * 1024;
  }
  return 0;
}

WeightArena::~WeightArena() {
  for (const Chunk& c : chunks_) munmap(c.base, c.size);
}

void* WeightArena::alloc(size_t bytes) {
  bytes = align64(bytes ? bytes : 1);
  if (chunks_.empty() || chunks_.back().size - chunks_.back().used < bytes) {
    const size_t size = (std::max(kChunk, bytes) + kHugePage - 1) / kHugePage * kHugePage;
    bool huge = false;
    uint8_t* base = map_huge(size, &huge);
    if (!base) return nullptr;
    if (huge) huge_pages_ = true;
    chunks_.push_back({base, size, 0});
  }
  Chunk& c = chunks_.back();
  void* p = c.base + c.used;
  c.used += bytes;
  return p;
}

std::unique_ptr<ops::Buffer> CpuBackend::alloc(size_t bytes) {
  return std::make_unique<HostBuffer>(bytes);
}

void CpuBackend::to_host(const void* src, void* dst, size_t bytes) {
  if (src != dst) std::memcpy(dst, src, bytes);
}

void CpuBackend::from_host(const void* src, void* dst, size_t bytes) {
  if (src != dst) std::memcpy(dst, src, bytes);
}

}  // namespace straw::cpu
