// The CPU backend: every op, multi-threaded, with SIMD kernels picked at run time from CPUID.
//
// Weights. prepare_weight() copies each matmul weight into anonymous memory (2 MB huge pages where
// the kernel allows), repacking the quantized formats with integer kernels into tiles of 16
// interleaved rows (layout tag kLayoutTiled) and float weights into k-major groups of 32 rows
// (kLayoutFloatRows), so that each streams from memory as one sequential run (kernels.h). When the
// copies would not fit in RAM, or the anonymous mapping fails, the weight stays in the file mapping
// (layout 0) and its matmuls repack tiles on the fly, which is slower; prepare_status() says how
// many weights that hit.
//
// Matmul math. Quantized weights multiply int8 activations (one float scale per 32 elements, see
// kernels.h) with exact integer dot products, then one float FMA per weight group applies both
// scales; this is closer to exact math than llama.cpp's one activation scale per 256 elements.
// Float weights (F32, F16, BF16) multiply the float activations directly. Without AVX2 (or for the
// types the kernels do not cover: Q4_1, Q2_K, Q3_K) the reference path dequantizes tiles of rows to
// float and uses float dot products: the exact dequantized model, also the tests' oracle.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/kernels.h"
#include "cpu/thread_pool.h"
#include "ops/backend.h"

namespace straw::cpu {

// ops::Weight::layout of a weight repacked into tiles (quantized) or row groups (float); kernels.h.
inline constexpr uint32_t kLayoutTiled = 0x31544C53;      // "STL1"
inline constexpr uint32_t kLayoutFloatRows = 0x31525346;  // "FSR1"

struct CpuOptions {
  int n_threads = 1;
  std::optional<Isa> isa;    // kernels to use; default best_isa() (unsupported levels throw)
  bool copy_weights = true;  // copy / repack weights into anonymous memory in prepare_weight
  size_t memory_budget = 0;  // bytes the copies may take; 0: MemAvailable minus a reserve
};

// What prepare_weight did with the model's weights, for the caller to report.
struct PrepareStatus {
  int64_t n_copied = 0;    // weights now in anonymous memory (tiled or plain copies)
  int64_t n_in_place = 0;  // weights used from the file mapping
  size_t copied_bytes = 0;
  size_t in_place_bytes = 0;
  bool low_memory = false;  // some weights stayed in place because RAM was short
  bool huge_pages = false;  // the kernel accepted MADV_HUGEPAGE for the copies
  // One line: "weights: 1.1 GiB repacked (huge pages)" or a warning about the slow path.
  std::string message() const;
};

class WeightArena;

// Bytes of anonymous memory prepare_weight takes for w on a backend with kernels `isa` (its tiled,
// grouped or plain copy); 0 when w stays where it is (vectors, the scalar level, no copies).
size_t weight_copy_bytes(const ops::Weight& w, Isa isa, bool copy_weights = true);

class CpuBackend final : public ops::Backend {
 public:
  explicit CpuBackend(int n_threads);
  explicit CpuBackend(const CpuOptions& options);
  ~CpuBackend() override;

  int n_threads() const { return pool_.size(); }
  ThreadPool& pool() { return pool_; }
  Isa isa() const { return isa_; }
  const PrepareStatus& prepare_status() const { return status_; }
  // weight_copy_bytes for this backend's kernels and options.
  size_t copy_bytes(const ops::Weight& w) const {
    return weight_copy_bytes(w, isa_, options_.copy_weights);
  }

  std::unique_ptr<ops::Buffer> alloc(size_t bytes) override;
  void to_host(const void* src, void* dst, size_t bytes) override;
  void from_host(const void* src, void* dst, size_t bytes) override;
  ops::Weight prepare_weight(const ops::Weight& w) override;
  void get_rows(const ops::Weight& table, std::span<const int32_t> tokens, float* out) override;
  void matmul(const ops::Weight& w, const float* x, float* y, int n_tokens) override;
  // Tiled weights at fewer than 16 tokens: one parallel region over all their tiles (one barrier;
  // decode reads them as one stream per thread), x quantized once per activation format; other
  // weights and longer batches one matmul each.
  void matmul_many(std::span<const ops::MatmulJob> jobs, const float* x, int n_tokens) override;
  void add_bias(float* y, const ops::Weight& b, int64_t n_rows, int64_t width) override;
  void rmsnorm(const float* x, const ops::Weight& w, float* y, int64_t n_rows, int64_t width,
               float eps) override;
  void rope(float* x, int n_tokens, int n_heads, int head_dim, int64_t pos0,
            const ops::RopeParams& p) override;
  void kv_store(const ops::KvLayer& kv, const float* k, const float* v, int n_tokens, int64_t pos0,
                int64_t k_width, int64_t v_width) override;
  void kv_shift(const ops::KvLayer& kv, const ops::KvShiftParams& p) override;
  void attention(const float* q, const ops::KvLayer& kv, float* out,
                 const ops::AttentionParams& p) override;
  void swiglu(const float* gate, const float* up, float* out, int64_t n) override;
  void add(float* x, const float* y, int64_t n) override;
  void copy_rows(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                 int64_t n_rows, int64_t width) override;
  void sigmoid_mul(float* x, const float* g, int64_t n) override;
  void sigmoid_scale_rows(float* y, const float* g, int64_t n_rows, int64_t width) override;
  void l2norm(float* x, int n_tokens, int rows_per_token, int64_t width, int64_t token_stride,
              float eps) override;
  void rmsnorm_gated(const float* x, const ops::Weight& w, const float* z, float* y, int64_t n_rows,
                     int64_t width, float eps) override;
  void delta_net_gates(float* alpha, float* beta, const ops::Weight& dt_bias, const ops::Weight& a,
                       int n_tokens, int n_heads) override;
  void ssm_conv(const ops::ConvParams& p) override;
  void gated_delta_net(const ops::DeltaNetParams& p) override;
  void moe_route(const float* logits, int n_tokens, int n_expert, int n_used, bool normalize,
                 float scale, int32_t* ids, float* weights) override;
  void moe_matmul(const ops::Weight& w, const float* x, bool x_per_slot, const int32_t* ids,
                  int n_tokens, int n_used, float* y) override;
  void moe_combine(const float* y, const float* weights, int n_tokens, int n_used, int64_t width,
                   float* out) override;

 private:
  // Per-thread scratch, grown on first use and kept: no allocation per token in steady state.
  float* scratch(int thread, size_t n_floats);
  uint8_t* act_buffer(size_t bytes);

  void matmul_reference(const ops::Weight& w, const float* x, float* y, int n_tokens);
  void matmul_tiled(const ops::Weight& w, const float* x, float* y, int n_tokens);
  // Repacked weights of one n_in (at most 4): one parallel region over all their tiles.
  void matmul_tiles(std::span<const ops::MatmulJob* const> jobs, const float* x, int n_tokens);
  // x ([n_tokens][n_in]) quantized in each format into the act buffer, format k at
  // k * stride * n_tokens (over tokens in parallel from 16 tokens on).
  uint8_t* quantized_act(const float* x, int64_t n_in, int n_tokens,
                         std::span<const ActParams> formats);
  void matmul_rows(const ops::Weight& w, const float* x, float* y, int n_tokens);
  // moe_matmul's paths (moe.cpp): the slots sorted by expert are in moe_; each writes the result
  // of sorted slot i to moe_y_ + i * n_out.
  void moe_tiled(const ops::Weight& w, const float* x, bool x_per_slot, int n_used);
  void moe_rows(const ops::Weight& w, const float* x, bool x_per_slot, int n_used);
  void moe_reference(const ops::Weight& w, const float* x, bool x_per_slot, int n_used);

  ThreadPool pool_;
  Isa isa_;
  const MatKernels* kernels_;  // null: the reference path for everything
  CpuOptions options_;
  std::vector<std::vector<float>> scratch_;
  std::vector<float>
      attn_parts_;  // decode attention's per-key-range softmax states (attention.cpp)
  std::unique_ptr<WeightArena> arena_;
  PrepareStatus status_;
  std::vector<float> act_storage_;  // quantized activations, in floats for 4-byte alignment
  // The slots (token t, choice k) of the current expert matmul grouped by expert: expert e's
  // slots are slot[begin[e] .. begin[e + 1]), slot = t * n_used + k, in increasing order.
  struct MoeGroups {
    std::vector<int64_t> begin;   // [n_expert + 1]
    std::vector<int64_t> slot;    // [n_tokens * n_used]
    std::vector<int32_t> active;  // experts with at least one slot, in increasing order
    std::vector<int64_t> next;    // the counting sort's cursors
    // A piece of work: row units [unit0, unit1) (tiles of 16 rows or float groups of 4) of
    // expert e's matrix times all of its slots.
    struct Item {
      int32_t e;
      int64_t unit0, unit1;
    };
    std::vector<Item> items;
  } moe_;
  std::vector<float> moe_x_;  // float activations gathered in slot order (moe_rows, reference)
  std::vector<float> moe_y_;  // results in slot order before the scatter to y
  // RoPE cos/sin tables ([n_tokens][n_rot/2] pairs) for the positions of recent calls: one per
  // sequence of a batched step, shared by the layers of the step.
  struct RopeTable {
    int64_t pos0 = -1;
    int n_tokens = 0;
    ops::RopeParams params;
    std::vector<float> cs;
  };
  std::array<RopeTable, 8> rope_tables_;
  size_t rope_next_ = 0;  // the table replaced next (round robin)
  // ssm_conv's taps transposed to [kernel][channels], per taps vector, keyed by its address: the
  // model's taps are weights, unchanged while the backend lives (as prepare_weight assumes), so
  // they are transposed once, not per call. A few sampled taps and the size are checked too, so
  // that other taps at a reused address (a caller's freed buffer) are transposed anew.
  struct ConvTaps {
    size_t n = 0;
    std::array<float, 8> sample{};  // taps at n * i / 8
    std::vector<float> t;           // transposed
  };
  std::unordered_map<const float*, ConvTaps> conv_taps_;
};

// Float dot product with 16 independent partial sums (vectorizes without -ffast-math).
float dot_f32(const float* a, const float* b, int64_t n);

}  // namespace straw::cpu
