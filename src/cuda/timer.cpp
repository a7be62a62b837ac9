#include "cuda/timer.h"

#include <cuda_runtime.h>

#include "cuda/cuda_check.h"

namespace straw::cuda {

EventTimer::EventTimer(Stream stream) : stream_(stream) {
  cudaEvent_t a = nullptr, b = nullptr;
  STRAW_CUDA_CHECK(cudaEventCreate(&a));
  const cudaError_t err = cudaEventCreate(&b);
  if (err != cudaSuccess) {
    cudaEventDestroy(a);
    STRAW_CUDA_CHECK(err);
  }
  start_ = a;
  stop_ = b;
}

EventTimer::~EventTimer() {
  cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}

void EventTimer::start() {
  STRAW_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(start_), stream_));
}

double EventTimer::stop_ms() {
  STRAW_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(stop_), stream_));
  STRAW_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)));
  float ms = 0;
  STRAW_CUDA_CHECK(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_), static_cast<cudaEvent_t>(stop_)));
  return ms;
}

}  // namespace straw::cuda
