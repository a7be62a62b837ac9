// The CPU backend: the reference implementation of every op, multi-threaded.
//
// Weights are used in place (the mmap'd file is their storage). Quantized matmuls dequantize a
// tile of weight rows to float once and reuse it for every token of the batch, so the math is the
// exact dequantized model with float32 accumulation (no activation rounding). The SIMD kernels of
// the CPU-kernels issue replace the inner loops; this file stays their test oracle.
#pragma once

#include <memory>
#include <vector>

#include "cpu/thread_pool.h"
#include "ops/backend.h"

namespace straw::cpu {

class CpuBackend final : public ops::Backend {
 public:
  explicit CpuBackend(int n_threads);

  int n_threads() const { return pool_.size(); }
  ThreadPool& pool() { return pool_; }

  std::unique_ptr<ops::Buffer> alloc(size_t bytes) override;
  void to_host(const void* src, void* dst, size_t bytes) override;
  void get_rows(const ops::Weight& table, std::span<const int32_t> tokens, float* out) override;
  void matmul(const ops::Weight& w, const float* x, float* y, int n_tokens) override;
  void add_bias(float* y, const ops::Weight& b, int64_t n_rows, int64_t width) override;
  void rmsnorm(const float* x, const ops::Weight& w, float* y, int64_t n_rows, int64_t width,
               float eps) override;
  void rope(float* x, int n_tokens, int n_heads, int head_dim, int64_t pos0,
            const ops::RopeParams& p) override;
  void kv_store(const ops::KvLayer& kv, const float* k, const float* v, int n_tokens, int64_t pos0,
                int64_t k_width, int64_t v_width) override;
  void attention(const float* q, const ops::KvLayer& kv, float* out,
                 const ops::AttentionParams& p) override;
  void swiglu(const float* gate, const float* up, float* out, int64_t n) override;
  void add(float* x, const float* y, int64_t n) override;

 private:
  // Per-thread scratch, grown on first use and kept: no allocation per token in steady state.
  float* scratch(int thread, size_t n_floats);

  ThreadPool pool_;
  std::vector<std::vector<float>> scratch_;
};

// Float dot product with 16 independent partial sums (vectorizes without -ffast-math).
float dot_f32(const float* a, const float* b, int64_t n);

}  // namespace straw::cpu
