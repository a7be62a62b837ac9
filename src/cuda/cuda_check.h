// Error checking of every CUDA runtime and cuBLAS call: a failure becomes straw::Error naming the
// call, its file:line and the CUDA error, never exit() or abort().
#pragma once

#include <cuda_runtime.h>

namespace straw::cuda {

// Throws straw::Error: "CUDA error <name> (<description>) in <expr> at <file>:<line>".
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
// Throws straw::Error for a cublasStatus_t (passed as int so this header needs no cuBLAS).
[[noreturn]] void throw_cublas_error(int status, const char* expr, const char* file, int line);

}  // namespace straw::cuda

#define STRAW_CUDA_CHECK(expr)                                                     \
  do {                                                                             \
    const cudaError_t straw_cuda_err_ = (expr);                                    \
    if (straw_cuda_err_ != cudaSuccess)                                            \
      ::straw::cuda::throw_cuda_error(straw_cuda_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: configuration errors are reported at once, faults at the next sync.
#define STRAW_CUDA_CHECK_LAUNCH() STRAW_CUDA_CHECK(cudaGetLastError())

#define STRAW_CUBLAS_CHECK(expr)                                                      \
  do {                                                                                \
    const int straw_cublas_st_ = static_cast<int>(expr);                              \
    if (straw_cublas_st_ != 0)                                                        \
      ::straw::cuda::throw_cublas_error(straw_cublas_st_, #expr, __FILE__, __LINE__); \
  } while (0)
