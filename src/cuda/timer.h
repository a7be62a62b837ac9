// Device-side timing for the benchmarks and the check script: CUDA events around work enqueued on
// a stream. Plain C++ header (no CUDA types).
#pragma once

#include "cuda/kernels.h"

namespace straw::cuda {

class EventTimer {
 public:
  explicit EventTimer(Stream stream);
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  void start();
  // Waits for the work enqueued since start() and returns its device time in milliseconds.
  double stop_ms();

 private:
  Stream stream_;
  void* start_ = nullptr;  // cudaEvent_t
  void* stop_ = nullptr;
};

}  // namespace straw::cuda
