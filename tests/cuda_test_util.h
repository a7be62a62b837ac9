// Shared by the CUDA op tests (cuda_kernels_test.cpp, cuda_linear_attention_test.cpp): a fixture
// that skips without a usable GPU, random host data, device buffers filled from or read back to
// the host, and the error measure. Only for builds with CUDA (STRAW_HAVE_CUDA).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"

namespace straw::test {

// ||got - ref|| / ||ref||; infinite as soon as got has a NaN or infinity.
inline double rel_error(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

class CudaOpsTest : public ::testing::Test {
 protected:
  explicit CudaOpsTest(uint32_t seed) : rng_(seed) {}

  void SetUp() override {
    std::string why;
    if (!cuda::cuda_available(&why))
      GTEST_SKIP() << "no usable CUDA device (" << why << "): the GPU kernel tests need one";
    gpu_ = std::make_unique<cuda::CudaBackend>(cuda::CudaOptions{});
  }

  std::vector<float> random(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng_);
    return v;
  }

  // A device buffer holding `v`.
  std::unique_ptr<ops::Buffer> up(const std::vector<float>& v) {
    auto b = gpu_->alloc(v.size() * sizeof(float));
    gpu_->from_host(v.data(), b->data(), v.size() * sizeof(float));
    return b;
  }
  // Poisoned first, so that outputs the GPU leaves unwritten show as NaN.
  std::unique_ptr<ops::Buffer> poisoned(size_t n) {
    return up(std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()));
  }
  std::vector<float> down(const ops::Buffer& b, size_t n) {
    std::vector<float> v(n);
    gpu_->to_host(const_cast<ops::Buffer&>(b).data(), v.data(), n * sizeof(float));
    return v;
  }

  std::unique_ptr<cuda::CudaBackend> gpu_;
  cpu::CpuBackend cpu_{2};
  std::mt19937 rng_;
};

}  // namespace straw::test
