// CUDA errors as straw::Error, device discovery, and budgeted device memory.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/backend_impl.h"
#include "util/str.h"

namespace straw::cuda {

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  fail("CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ") in ", expr, " at ",
       file, ":", line,
       err == cudaErrorMemoryAllocation
           ? " (out of device memory: lower --ctx or --vram-budget, or use fewer --gpu-layers)"
           : "");
}

void throw_cublas_error(int status, const char* expr, const char* file, int line) {
  fail("cuBLAS error ", cublasGetStatusName(static_cast<cublasStatus_t>(status)), " (",
       cublasGetStatusString(static_cast<cublasStatus_t>(status)), ") in ", expr, " at ", file, ":",
       line);
}

bool cuda_available(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (why) *why = str("no usable CUDA driver or device (", cudaGetErrorString(err), ")");
    cudaGetLastError();  // clear the error so later calls are not affected
    return false;
  }
  if (n == 0) {
    if (why) *why = "no CUDA device found";
    return false;
  }
  return true;
}

DeviceInfo device_info(int index) {
  std::string why;
  if (!cuda_available(&why)) fail("CUDA backend: ", why);
  int n = 0;
  STRAW_CUDA_CHECK(cudaGetDeviceCount(&n));
  if (index < 0 || index >= n)
    fail("CUDA device ", index, " does not exist (", n, " device", n == 1 ? "" : "s", " found)");
  cudaDeviceProp p{};
  STRAW_CUDA_CHECK(cudaGetDeviceProperties(&p, index));
  DeviceInfo d;
  d.index = index;
  d.name = p.name;
  d.cc_major = p.major;
  d.cc_minor = p.minor;
  d.sm_count = p.multiProcessorCount;
  d.l2_bytes = uint64_t(p.l2CacheSize);
  d.total_bytes = p.totalGlobalMem;
  // Only an informational estimate: a driver that no longer reports the memory clock (deprecated
  // attributes) leaves it 0 instead of refusing the device.
  int clock_khz = 0, bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, index) != cudaSuccess ||
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, index) != cudaSuccess) {
    cudaGetLastError();
    clock_khz = bus_bits = 0;
  }
  d.bandwidth_estimate =
      2.0 * double(clock_khz) * 1e3 * double(bus_bits) / 8.0;  // double data rate
  int current = 0;
  STRAW_CUDA_CHECK(cudaGetDevice(&current));
  STRAW_CUDA_CHECK(cudaSetDevice(index));
  size_t free_b = 0, total_b = 0;
  const cudaError_t err = cudaMemGetInfo(&free_b, &total_b);
  cudaSetDevice(current);
  STRAW_CUDA_CHECK(err);
  d.free_bytes = free_b;
  return d;
}

uint64_t default_vram_budget(int device) {
  const DeviceInfo d = device_info(device);
  const uint64_t margin = (uint64_t(512) << 20) + d.total_bytes / 100;
  return d.free_bytes > margin ? d.free_bytes - margin : 0;
}

void* DeviceMemory::allocate(size_t bytes, const char* what) {
  const size_t size = align_up(std::max<size_t>(bytes, 1), kAlign);
  if (used_ + size > budget_)
    fail("CUDA backend: ", what, " need ", human_bytes(size), " of device memory but only ",
         human_bytes(budget_ - std::min(budget_, used_)), " of the ", human_bytes(budget_),
         " budget remain (", human_bytes(used_ + size - budget_),
         " missing); lower --ctx or --ubatch, use fewer --gpu-layers, or raise --vram-budget");
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, size);
  if (err != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail("CUDA backend: cannot allocate ", human_bytes(size), " of device memory for ", what, " (",
         cudaGetErrorString(err), "; ", human_bytes(free_b),
         " free on the device): lower --vram-budget, --ctx or --gpu-layers");
  }
  used_ += size;
  peak_ = std::max(peak_, used_);
  blocks_[reinterpret_cast<uintptr_t>(p)] = size;
  return p;
}

void DeviceMemory::release(void* p) noexcept {
  if (!p) return;
  auto it = blocks_.find(reinterpret_cast<uintptr_t>(p));
  if (it == blocks_.end()) return;
  used_ -= it->second;
  blocks_.erase(it);
  int current = 0;
  cudaGetDevice(&current);
  cudaSetDevice(device_);
  cudaFree(p);  // synchronizes with the device: no kernel still reads it
  cudaSetDevice(current);
}

bool DeviceMemory::contains(const void* p, size_t bytes) const {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = blocks_.upper_bound(a);
  if (it == blocks_.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}

}  // namespace straw::cuda
