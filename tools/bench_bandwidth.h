// The machine's multi-threaded streaming read bandwidth, measured the way a matrix-vector product
// reads its weights: every thread streams through its own contiguous slice of one large buffer
// (much larger than the last-level cache), all threads at once, on straw's CPU thread pool.
#pragma once

#include <cstdint>
#include <vector>

namespace straw::cli::bench {

struct Bandwidth {
  int threads = 0;
  uint64_t buffer_bytes = 0;
  std::vector<double> samples;  // bytes/s of each pass: buffer bytes over the pass's wall time
  double best = 0;              // the fastest pass (bytes/s)
};

// A buffer size well beyond the last-level cache: 4x the LLC sysconf reports, at least 1 GiB and
// at most 2 GiB.
uint64_t default_bandwidth_buffer();

// Allocates and touches the buffer (pages placed by the threads that read them), then times
// `passes` full reads of it. Throws straw::Error when the buffer cannot be allocated.
Bandwidth measure_read_bandwidth(int threads, int passes, uint64_t buffer_bytes);

}  // namespace straw::cli::bench
