// The CUDA backend: every op of ops::Backend on one NVIDIA GPU. Plain C++ header (no CUDA types),
// for the model layer, the CLI, the tests and the benchmarks; built only when STRAW_HAVE_CUDA.
//
// Memory. Every device allocation is counted against a budget (CudaOptions::vram_budget, default
// the free memory at start minus a margin) before it is made; one that does not fit throws
// straw::Error saying how much is missing. Weights go to one arena sized up front by
// reserve_weights() (or to one allocation each when nothing was reserved); KV caches and
// activation buffers are one allocation per alloc() call; kernel workspaces (8-bit activations,
// binary16 tiles for cuBLAS, attention partials, the cuBLAS workspace) grow to the largest op seen
// and are counted too. Host <-> device copies go through pinned buffers.
//
// Weights stay in their GGUF block layout (the kernels decode blocks in place); prepare_weight
// uploads them once. Norm and bias vectors given to an op as host pointers are uploaded on first
// use and kept. Uploads are found again by host address and size, so host data handed to the
// backend must stay unchanged (and allocated) while the backend lives, as a model's mapping does.
// The embedding table may stay in host memory: get_rows then dequantizes the rows on the CPU and
// uploads them (one row per token); a table that is already on the device (tied embeddings: the LM
// head's upload) is read there.
//
// Decode steps as CUDA Graphs. begin_forward()/end_forward() bracket a step. The first step of a
// shape (tokens, logit rows) runs op by op; the second is captured into a CUDA Graph while it is
// issued; later steps of that shape are checked op by op against the recording (same weights,
// buffers and shapes; token ids and positions may differ, the kernels read them from device memory
// written by begin_forward) without launching anything, and end_forward replays the graph. A step
// that differs (another session's buffers, another shape) runs op by op and is captured as another
// graph next time. Graphs are used for steps of at most 8 tokens; CudaOptions::graphs = false
// turns them off.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ops/backend.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace straw::cuda {

struct CudaOptions {
  int device = 0;
  uint64_t vram_budget = 0;  // bytes; 0: the free memory at start minus a margin
  bool graphs = true;        // capture and replay decode steps as CUDA Graphs
};

struct DeviceInfo {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;  // compute capability
  int sm_count = 0;
  uint64_t l2_bytes = 0;
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;  // when the info was read
  double bandwidth_estimate =
      0;  // bytes/s from the memory clock and bus width (peak, not measured)
};

// Whether a CUDA device can be used; when not, *why (if given) says what is missing.
bool cuda_available(std::string* why);
// Properties of device `index`; throws straw::Error when it cannot be opened.
DeviceInfo device_info(int index);
// The budget used when CudaOptions::vram_budget is 0: the device's free memory now, less a margin
// for the CUDA context and cuBLAS (512 MiB + 1% of the total).
uint64_t default_vram_budget(int device);

struct CudaStats {
  uint64_t vram_budget = 0;
  uint64_t vram_used = 0;  // bytes allocated now
  uint64_t vram_peak = 0;
  uint64_t eager_steps = 0;  // forward steps issued op by op
  uint64_t graph_captures = 0;
  uint64_t graph_replays = 0;
  uint64_t graph_mismatches = 0;  // steps that differed from every recording of their shape
};

class CudaBackend final : public ops::Backend {
 public:
  explicit CudaBackend(const CudaOptions& options);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::unique_ptr<ops::Buffer> alloc(size_t bytes) override;
  void to_host(const void* src, void* dst, size_t bytes) override;
  void from_host(const void* src, void* dst, size_t bytes) override;
  bool begin_forward(std::span<const int32_t> tokens, int64_t pos0, int n_logit_rows) override;
  void end_forward() override;
  ops::Weight prepare_weight(const ops::Weight& w) override;
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
  // Linear-attention and gated-attention ops (qwen35; backend_linear.cpp).
  void copy_rows(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                 int64_t n_rows, int64_t width) override;
  void sigmoid_mul(float* x, const float* g, int64_t n) override;
  void l2norm(float* x, int n_tokens, int rows_per_token, int64_t width, int64_t token_stride,
              float eps) override;
  void rmsnorm_gated(const float* x, const ops::Weight& w, const float* z, float* y, int64_t n_rows,
                     int64_t width, float eps) override;
  void delta_net_gates(float* alpha, float* beta, const ops::Weight& dt_bias, const ops::Weight& a,
                       int n_tokens, int n_heads) override;
  void ssm_conv(const ops::ConvParams& p) override;
  void gated_delta_net(const ops::DeltaNetParams& p) override;
  // Mixture-of-experts ops (qwen3moe, qwen35moe; backend_moe.cpp).
  void sigmoid_scale_rows(float* y, const float* g, int64_t n_rows, int64_t width) override;
  void moe_route(const float* logits, int n_tokens, int n_expert, int n_used, bool normalize,
                 float scale, int32_t* ids, float* weights) override;
  void moe_matmul(const ops::Weight& w, const float* x, bool x_per_slot, const int32_t* ids,
                  int n_tokens, int n_used, float* y) override;
  void moe_combine(const float* y, const float* weights, int n_tokens, int n_used, int64_t width,
                   float* out) override;

  // Bytes prepare_weight takes on the device for w (its rows, rounded up to the arena alignment).
  static uint64_t prepared_bytes(const ops::Weight& w);
  // One arena for the weights about to be prepared (the sum of prepared_bytes); call before the
  // first prepare_weight. Throws straw::Error when it does not fit the budget.
  void reserve_weights(uint64_t bytes);

  const DeviceInfo& info() const;
  CudaStats stats() const;
  void set_graphs(bool on);
  // Waits for every queued op.
  void synchronize();
  // The stream every op is queued on (for launching kernels of cuda/kernels.h beside the ops, as
  // the tests and benchmarks do).
  CUstream_st* stream() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The factory the model layer uses (`--device gpu`).
std::unique_ptr<ops::Backend> make_cuda_backend(const CudaOptions& options);

}  // namespace straw::cuda
