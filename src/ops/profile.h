// Per-op timing of a backend: a decorator that forwards every op to the backend it wraps and adds
// the op's wall time to a table, for `straw bench --profile` (where a decode step's time goes).
//
// Only for synchronous backends (the CPU): an op's wall time is its run time there, thread-pool
// hand-off and barrier included. A GPU backend queues its ops, so wrapping it would time the launch
// only (and break CUDA Graph capture); the API does not wrap it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ops/backend.h"

namespace straw::ops {

// One row of the table: an op, split by weight type for the ops that read weights.
struct OpStat {
  std::string op;      // "matmul", "attention", "rmsnorm", ...
  std::string type;    // weight type for matmul / moe_matmul / get_rows ("IQ4_XS"), else ""
  int64_t calls = 0;   // calls since the last reset
  double seconds = 0;  // wall time of those calls
  uint64_t bytes = 0;  // weight bytes the calls read (matmul: every row; moe_matmul: the
                       // selected experts' rows), 0 for ops without weights
};

class ProfiledBackend final : public Backend {
 public:
  explicit ProfiledBackend(Backend& inner) : inner_(inner) {}

  // The rows, the most expensive first.
  std::vector<OpStat> stats() const;
  void reset() { table_.clear(); }

  std::unique_ptr<Buffer> alloc(size_t bytes) override { return inner_.alloc(bytes); }
  void to_host(const void* src, void* dst, size_t bytes) override;
  void from_host(const void* src, void* dst, size_t bytes) override;
  bool begin_forward(std::span<const int32_t> tokens, int64_t pos0, int n_logit_rows) override {
    return inner_.begin_forward(tokens, pos0, n_logit_rows);
  }
  void end_forward() override { inner_.end_forward(); }
  Weight prepare_weight(const Weight& w) override { return inner_.prepare_weight(w); }

  void get_rows(const Weight& table, std::span<const int32_t> tokens, float* out) override;
  void matmul(const Weight& w, const float* x, float* y, int n_tokens) override;
  // One call timed; each product gets a "matmul" call of its type, the time split by bytes.
  void matmul_many(std::span<const MatmulJob> jobs, const float* x, int n_tokens) override;
  void add_bias(float* y, const Weight& b, int64_t n_rows, int64_t width) override;
  void rmsnorm(const float* x, const Weight& w, float* y, int64_t n_rows, int64_t width,
               float eps) override;
  void rope(float* x, int n_tokens, int n_heads, int head_dim, int64_t pos0,
            const RopeParams& p) override;
  void kv_store(const KvLayer& kv, const float* k, const float* v, int n_tokens, int64_t pos0,
                int64_t k_width, int64_t v_width) override;
  void attention(const float* q, const KvLayer& kv, float* out, const AttentionParams& p) override;
  void kv_shift(const KvLayer& kv, const KvShiftParams& p) override;
  void swiglu(const float* gate, const float* up, float* out, int64_t n) override;
  void add(float* x, const float* y, int64_t n) override;
  void copy_rows(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                 int64_t n_rows, int64_t width) override;
  void sigmoid_mul(float* x, const float* g, int64_t n) override;
  void sigmoid_scale_rows(float* y, const float* g, int64_t n_rows, int64_t width) override;
  void l2norm(float* x, int n_tokens, int rows_per_token, int64_t width, int64_t token_stride,
              float eps) override;
  void rmsnorm_gated(const float* x, const Weight& w, const float* z, float* y, int64_t n_rows,
                     int64_t width, float eps) override;
  void delta_net_gates(float* alpha, float* beta, const Weight& dt_bias, const Weight& a,
                       int n_tokens, int n_heads) override;
  void ssm_conv(const ConvParams& p) override;
  void gated_delta_net(const DeltaNetParams& p) override;
  void moe_route(const float* logits, int n_tokens, int n_expert, int n_used, bool normalize,
                 float scale, int32_t* ids, float* weights) override;
  void moe_matmul(const Weight& w, const float* x, bool x_per_slot, const int32_t* ids,
                  int n_tokens, int n_used, float* y) override;
  void moe_combine(const float* y, const float* weights, int n_tokens, int n_used, int64_t width,
                   float* out) override;

 private:
  // Runs f() and adds its wall time (and `bytes`) to the row (op, type).
  template <class F>
  void timed(const char* op, const char* type, uint64_t bytes, F&& f);
  void add(const char* op, const char* type, uint64_t bytes, double seconds);

  Backend& inner_;
  std::map<std::pair<std::string, std::string>, OpStat> table_;
};

}  // namespace straw::ops
