#include "bench_bandwidth.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <new>

#include "cpu/kernels.h"
#include "cpu/thread_pool.h"
#include "util/str.h"

namespace straw::cli::bench {

namespace {

// Sums a slice with eight independent accumulators (one cache line per iteration) so that the
// loop is limited by the loads, not by the add chain, and prefetches each line as the matmul
// kernels do (cpu::prefetch_ahead, at their distances for this CPU): without it one core's
// hardware prefetcher alone keeps too few lines in flight, and the decode kernels read faster than
// this test (roofline fractions above 100 % with one thread). n is a multiple of 8.
uint64_t sum_slice(const uint64_t* p, size_t n) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
  for (size_t i = 0; i < n; i += 8) {
    cpu::prefetch_ahead(reinterpret_cast<const uint8_t*>(p + i), 64);
    a0 += p[i];
    a1 += p[i + 1];
    a2 += p[i + 2];
    a3 += p[i + 3];
    a4 += p[i + 4];
    a5 += p[i + 5];
    a6 += p[i + 6];
    a7 += p[i + 7];
  }
  return a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7;
}

// [begin, end) words of thread t's slice, cache-line aligned.
std::pair<size_t, size_t> slice(size_t words, int t, int n) {
  const size_t lines = words / 8;
  return {lines * static_cast<size_t>(t) / static_cast<size_t>(n) * 8,
          lines * static_cast<size_t>(t + 1) / static_cast<size_t>(n) * 8};
}

}  // namespace

uint64_t default_bandwidth_buffer() {
  const long llc = ::sysconf(_SC_LEVEL3_CACHE_SIZE);
  const uint64_t four_llc = llc > 0 ? 4 * static_cast<uint64_t>(llc) : 0;
  return std::clamp<uint64_t>(four_llc, uint64_t(1) << 30, uint64_t(2) << 30);
}

Bandwidth measure_read_bandwidth(int threads, int passes, uint64_t buffer_bytes) {
  if (threads < 1) fail("bandwidth: threads must be >= 1");
  if (passes < 1) fail("bandwidth: passes must be >= 1");
  const size_t words = static_cast<size_t>(buffer_bytes / 64) * 8;
  if (words == 0) fail("bandwidth: the buffer must be at least 64 bytes");
  // 2 MiB-aligned and advised to huge pages, as the repacked weights are (cpu/memory.cpp).
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t alloc = (words * 8 + kHuge - 1) / kHuge * kHuge;
  std::unique_ptr<uint64_t[], decltype(&std::free)> buf(
      static_cast<uint64_t*>(std::aligned_alloc(kHuge, alloc)), &std::free);
  if (!buf) fail("bandwidth: cannot allocate ", human_bytes(words * 8), " for the read buffer");
  ::madvise(buf.get(), alloc, MADV_HUGEPAGE);

  cpu::ThreadPool pool(threads);
  uint64_t* data = buf.get();
  pool.run([&](int t, int n) {
    auto [b, e] = slice(words, t, n);
    for (size_t i = b; i < e; ++i) data[i] = i * 0x9E3779B97F4A7C15ull;
  });

  // The sums go to an atomic so that the compiler cannot drop the loads.
  std::atomic<uint64_t> sink{0};
  Bandwidth bw;
  bw.threads = threads;
  bw.buffer_bytes = words * 8;
  for (int p = 0; p < passes; ++p) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run([&](int t, int n) {
      auto [b, e] = slice(words, t, n);
      sink.fetch_xor(sum_slice(data + b, e - b), std::memory_order_relaxed);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bw.samples.push_back(static_cast<double>(bw.buffer_bytes) / s);
  }
  bw.best = *std::max_element(bw.samples.begin(), bw.samples.end());
  return bw;
}

}  // namespace straw::cli::bench
