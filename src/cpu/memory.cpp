// CPU backend memory: 64-byte aligned, zeroed host allocations.
#include <cstdlib>
#include <cstring>
#include <new>

#include "cpu/cpu_backend.h"
#include "util/str.h"

namespace straw::cpu {

namespace {

class HostBuffer final : public ops::Buffer {
 public:
  explicit HostBuffer(size_t bytes) : size_(bytes) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    data_ = std::aligned_alloc(64, rounded ? rounded : 64);
    if (!data_)
      fail("out of memory: cannot allocate ", human_bytes(bytes),
           " of host memory (use a smaller --ctx or --ubatch)");
    std::memset(data_, 0, rounded);
  }
  ~HostBuffer() override { std::free(data_); }
  void* data() override { return data_; }
  size_t size() const override { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_;
};

}  // namespace

std::unique_ptr<ops::Buffer> CpuBackend::alloc(size_t bytes) {
  return std::make_unique<HostBuffer>(bytes);
}

void CpuBackend::to_host(const void* src, void* dst, size_t bytes) {
  if (src != dst) std::memcpy(dst, src, bytes);
}

}  // namespace straw::cpu
