// Internals of CudaBackend shared by its .cpp files: device memory accounting, the op records
// that graph capture and verification compare, and the Impl state.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_check.h"
#include "cuda/kernels.h"

namespace straw::cuda {

inline constexpr size_t kAlign = 256;                     // every device allocation and arena slice
inline constexpr uint32_t kDeviceLayout = 0x43554441;     // "CUDA": Weight::layout of uploads
inline constexpr int kMaxGraphTokens = kMaxMatvecTokens;  // steps captured as graphs
inline constexpr size_t kDequantTileBytes = size_t(64) << 20;  // binary16 weights per GEMM
inline constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;
inline constexpr size_t kPinnedChunk = size_t(16) << 20;  // host <-> device staging

// y = W x through cuBLAS rather than a matvec kernel: prompts (more than kMaxMatvecTokens tokens),
// and F32 / F16 rows whose length is not a multiple of 8 (the matvec kernels read 8 values at a
// time; only toy models such as stories260K, n_ff 172, have them; cuBLAS reads the rows as they
// are).
inline bool matmul_uses_gemm(quant::Type type, int64_t n_in, int n_tokens) {
  const bool float_rows = type == quant::Type::F32 || type == quant::Type::F16;
  return n_tokens > kMaxMatvecTokens || (float_rows && n_in % 8 != 0);
}

inline size_t align_up(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

// Device memory under a budget. Shared with the Buffers handed out, which may outlive the backend.
class DeviceMemory {
 public:
  DeviceMemory(int device, uint64_t budget) : device_(device), budget_(budget) {}
  // cudaMalloc of `bytes` (rounded up to kAlign) after checking the budget; `what` names the
  // allocation in the error ("KV cache / activations", "weights", "workspace").
  void* allocate(size_t bytes, const char* what);
  void release(void* p) noexcept;
  // Whether [p, p + bytes) lies inside one allocation made here.
  bool contains(const void* p, size_t bytes) const;
  uint64_t budget() const { return budget_; }
  uint64_t used() const { return used_; }
  uint64_t peak() const { return peak_; }
  int device() const { return device_; }

 private:
  int device_;
  uint64_t budget_;
  uint64_t used_ = 0, peak_ = 0;
  std::map<uintptr_t, size_t> blocks_;  // base -> size
};

// A grow-only device buffer (kernel workspace).
struct Workspace {
  void* ptr = nullptr;
  size_t bytes = 0;
};

// ---- op records: what an op issues, with every pointer already on the device ------------------
// Positions are stored relative to the step (pos_dev + pos_add), so the records of two steps that
// differ only in tokens and positions compare equal.

struct GetRowsDeviceRec {
  quant::Type type;
  const void* table;
  size_t row_bytes;
  int64_t n_in;
  const int32_t* ids;
  int n;
  float* out;
  bool operator==(const GetRowsDeviceRec&) const = default;
};
struct CopyInRec {  // pinned host rows -> device (host-resident embedding table)
  const void* pinned;
  void* dst;
  size_t bytes;
  bool operator==(const CopyInRec&) const = default;
};
struct MatmulRec {
  quant::Type type;
  const void* w;
  size_t row_bytes;
  int64_t n_in, n_out;
  const float* x;
  float* y;
  int n_tokens;
  bool operator==(const MatmulRec&) const = default;
};
struct BiasRec {
  float* y;
  const float* b;
  int64_t n_rows, width;
  bool operator==(const BiasRec&) const = default;
};
struct RmsnormRec {
  const float* x;
  const float* w;
  float* y;
  int64_t n_rows, width;
  float eps;
  bool operator==(const RmsnormRec&) const = default;
};
struct RopeRec {
  float* x;
  int n_tokens, n_heads, head_dim;
  const int32_t* pos_dev;
  int64_t pos_add;
  bool neox;
  int n_rot;
  float base, freq_scale;
  const float* freq_factors;
  float ext_factor, yarn_low, yarn_high, mscale;  // YaRN (ops::RopeParams)
  bool operator==(const RopeRec&) const = default;
};
struct KvStoreRec {
  bool f16;
  KvQuant k_quant, v_quant;
  void* k_cache;
  void* v_cache;
  const float* k;
  const float* v;
  int n_tokens;
  const int32_t* pos_dev;
  int64_t pos_add;
  int64_t k_width, v_width;
  bool operator==(const KvStoreRec&) const = default;
};
struct AttentionRec {
  const float* q;
  const void* k;
  const void* v;
  bool f16;
  KvQuant k_quant, v_quant;
  float* out;
  int n_tokens;
  const int32_t* pos_dev;
  int64_t pos_add;
  int n_heads, n_kv_heads, head_dim, head_dim_v;
  float scale;
  int64_t n_ctx;
  bool operator==(const AttentionRec&) const = default;
};
struct SwigluRec {
  const float* gate;
  const float* up;
  float* out;
  int64_t n;
  bool operator==(const SwigluRec&) const = default;
};
struct AddRec {
  float* x;
  const float* y;
  int64_t n;
  bool operator==(const AddRec&) const = default;
};

// Linear-attention and gated-attention ops (qwen35).
struct CopyRowsRec {
  const float* src;
  int64_t src_stride;
  float* dst;
  int64_t dst_stride, n_rows, width;
  bool operator==(const CopyRowsRec&) const = default;
};
struct SigmoidMulRec {
  float* x;
  const float* g;
  int64_t n;
  bool operator==(const SigmoidMulRec&) const = default;
};
struct L2normRec {
  float* x;
  int n_tokens, rows_per_token;
  int64_t width, token_stride;
  float eps;
  bool operator==(const L2normRec&) const = default;
};
struct RmsnormGatedRec {
  const float* x;
  const float* w;
  const float* z;
  float* y;
  int64_t n_rows, width;
  float eps;
  bool operator==(const RmsnormGatedRec&) const = default;
};
struct DeltaGatesRec {
  float* alpha;
  float* beta;
  const float* dt_bias;
  const float* a;
  int n_tokens, n_heads;
  bool operator==(const DeltaGatesRec&) const = default;
};
// kernels.h is also read by nvcc in C++17, which has no defaulted comparisons.
inline bool operator==(const ConvArgs& x, const ConvArgs& y) {
  auto tie = [](const ConvArgs& a) {
    return std::tie(a.n_tokens, a.n_channels, a.kernel, a.x, a.x_stride, a.w, a.state, a.y, a.silu,
                    a.snapshot, a.snapshot_after);
  };
  return tie(x) == tie(y);
}
inline bool operator==(const DeltaNetArgs& x, const DeltaNetArgs& y) {
  auto tie = [](const DeltaNetArgs& a) {
    return std::tie(a.n_tokens, a.n_k_heads, a.n_v_heads, a.head_dim, a.q, a.k, a.qk_stride, a.v,
                    a.v_stride, a.g, a.beta, a.state, a.out, a.scale, a.snapshot, a.snapshot_after);
  };
  return tie(x) == tie(y);
}
struct ConvRec {
  ConvArgs a;
  bool operator==(const ConvRec&) const = default;
};
struct DeltaNetRec {
  DeltaNetArgs a;
  bool operator==(const DeltaNetRec&) const = default;
};

// Mixture-of-experts ops (qwen3moe, qwen35moe).
struct MoeRouteRec {
  const float* logits;
  int n_tokens, n_expert, n_used;
  bool normalize;
  float scale;
  int32_t* ids;
  float* weights;
  bool operator==(const MoeRouteRec&) const = default;
};
inline bool operator==(const MoeMatmulArgs& x, const MoeMatmulArgs& y) {
  auto tie = [](const MoeMatmulArgs& a) {
    return std::tie(a.type, a.w, a.expert_bytes, a.row_bytes, a.n_expert, a.n_in, a.n_out, a.x,
                    a.per_slot, a.ids, a.n_tokens, a.n_used, a.y);
  };
  return tie(x) == tie(y);
}
struct MoeMatmulRec {
  MoeMatmulArgs a;
  void* workspace;
  bool operator==(const MoeMatmulRec&) const = default;
};
struct MoeCombineRec {
  const float* y;
  const float* weights;
  int n_tokens, n_used;
  int64_t width;
  float* out;
  bool operator==(const MoeCombineRec&) const = default;
};
struct SigmoidScaleRowsRec {
  float* y;
  const float* g;
  int64_t n_rows, width;
  bool operator==(const SigmoidScaleRowsRec&) const = default;
};

using OpRec = std::variant<GetRowsDeviceRec, CopyInRec, MatmulRec, BiasRec, RmsnormRec, RopeRec,
                           KvStoreRec, AttentionRec, SwigluRec, AddRec, CopyRowsRec, SigmoidMulRec,
                           L2normRec, RmsnormGatedRec, DeltaGatesRec, ConvRec, DeltaNetRec,
                           MoeRouteRec, MoeMatmulRec, MoeCombineRec, SigmoidScaleRowsRec>;

struct StepShape {
  int n_tokens = 0;
  int n_logit_rows = 0;
  bool operator==(const StepShape&) const = default;
};

struct RecordedGraph {
  StepShape shape;
  std::vector<OpRec> ops;
  cudaGraphExec_t exec = nullptr;
  uint64_t last_use = 0;
};

enum class Mode { Eager, Capture, Verify };

struct CudaBackend::Impl {
  CudaOptions options;
  DeviceInfo info;
  std::shared_ptr<DeviceMemory> mem;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;

  // Weights: one reserved arena (bump allocation) or one allocation each.
  uint8_t* arena = nullptr;
  size_t arena_size = 0, arena_used = 0;
  std::vector<void*> weight_blocks;  // allocations owned by the backend (arena, weights, vectors)
  // Host pointer -> device copy, for weights and vectors uploaded so far. The size is part of the
  // key: host memory a caller freed can come back at the same address for another tensor, and a
  // copy of a different size must not be taken for it (same address and size: the contract says
  // host data passed to the backend stays unchanged while the backend lives).
  struct Upload {
    const void* dev = nullptr;
    size_t bytes = 0;
  };
  std::unordered_map<const void*, Upload> uploaded;
  const void* find_upload(const void* host, size_t bytes) const {
    auto it = uploaded.find(host);
    return it != uploaded.end() && it->second.bytes == bytes ? it->second.dev : nullptr;
  }

  // Kernel workspaces.
  Workspace act_q8, act_f16, tile_f16, attn_part, cublas_ws, ids, moe;
  // Step parameters on the device: int32 [0] = position of the step, [1..] = token ids.
  Workspace step;
  // Pinned host memory: staging for uploads (two chunks, alternating), downloads, step
  // parameters and host-dequantized embedding rows.
  void* pinned_up[2] = {nullptr, nullptr};
  cudaEvent_t up_done[2] = {nullptr, nullptr};
  int up_next = 0;
  void* pinned_down = nullptr;
  void* pinned_step = nullptr;
  size_t pinned_step_bytes = 0;
  cudaEvent_t step_uploaded = nullptr;
  void* pinned_rows = nullptr;
  size_t pinned_rows_bytes = 0;
  cudaEvent_t rows_consumed = nullptr;  // after the last copy (or step) that read pinned_rows

  // Caches of converted activations: valid until an op writes device memory.
  struct ActCache {
    const float* x = nullptr;
    int64_t n_in = 0;
    int n_tokens = 0;
  } q8_of, f16_of;

  // Forward-step recording.
  bool in_step = false;
  Mode mode = Mode::Eager;
  StepShape shape;
  int64_t step_pos0 = 0;
  std::vector<int32_t> step_tokens;
  std::vector<OpRec> recs;
  std::vector<size_t> candidates;  // graphs whose ops match recs so far (Verify)
  std::vector<RecordedGraph> graphs;
  std::vector<std::pair<StepShape, int>> seen;  // shape -> steps run op by op since a mismatch
  uint64_t use_clock = 0;
  CudaStats stats;

  explicit Impl(const CudaOptions& o);
  ~Impl();

  // Memory.
  const void* device_copy(const void* host, size_t bytes);  // uploads once, then cached
  // p itself when [p, p + bytes) is device memory of this backend, else its upload (device_copy).
  const void* on_device(const void* p, size_t bytes);
  const void* resolve(const ops::Weight& w);  // device pointer of a weight/vector
  // The device pointer of an F32 vector of at least n values (norm weights, biases, gates);
  // internal error naming `what` otherwise.
  const float* f32_vector(const ops::Weight& w, int64_t n, const char* what);
  void need_device(const void* p, size_t bytes, const char* what) const;
  void ensure(Workspace& ws, size_t bytes, const char* what);
  void upload(void* dst, const void* src, size_t bytes);  // host -> device via pinned chunks
  void grow_pinned(void*& p, size_t& have, size_t need);

  // Records: run at once, capture, or compare (graphs.cpp).
  void submit(const OpRec& r);
  void issue(const OpRec& r);  // enqueue the kernels of one op (issue.cpp)
  void flush_to_eager();       // a step that cannot be a graph: run what was recorded
  void abandon_step() noexcept;
  void destroy_graphs() noexcept;
  void invalidate_caches() { q8_of = {}, f16_of = {}; }
  StepPos step_pos(int64_t pos0) const;
  void gemm(const MatmulRec& m);
};

}  // namespace straw::cuda
