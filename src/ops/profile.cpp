#include "ops/profile.h"

#include <algorithm>
#include <chrono>

#include "quant/types.h"

namespace straw::ops {

template <class F>
void ProfiledBackend::timed(const char* op, const char* type, uint64_t bytes, F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  const auto t1 = std::chrono::steady_clock::now();
  add(op, type, bytes, std::chrono::duration<double>(t1 - t0).count());
}

void ProfiledBackend::add(const char* op, const char* type, uint64_t bytes, double seconds) {
  OpStat& s = table_[{op, type}];
  s.calls += 1;
  s.seconds += seconds;
  s.bytes += bytes;
}

std::vector<OpStat> ProfiledBackend::stats() const {
  std::vector<OpStat> rows;
  rows.reserve(table_.size());
  for (const auto& [key, s] : table_) {
    rows.push_back(s);
    rows.back().op = key.first;
    rows.back().type = key.second;
  }
  std::sort(rows.begin(), rows.end(),
            [](const OpStat& a, const OpStat& b) { return a.seconds > b.seconds; });
  return rows;
}

namespace {
const char* type_of(const Weight& w) {
  return quant::type_name(w.type);
}
// Bytes of every row of a 2-D weight (one matrix of an expert tensor).
uint64_t matrix_bytes(const Weight& w) {
  return uint64_t(w.n_out) * w.row_bytes;
}
}  // namespace

void ProfiledBackend::to_host(const void* src, void* dst, size_t bytes) {
  timed("to_host", "", 0, [&] { inner_.to_host(src, dst, bytes); });
}
void ProfiledBackend::from_host(const void* src, void* dst, size_t bytes) {
  timed("from_host", "", 0, [&] { inner_.from_host(src, dst, bytes); });
}
void ProfiledBackend::get_rows(const Weight& table, std::span<const int32_t> tokens, float* out) {
  timed("get_rows", type_of(table), uint64_t(tokens.size()) * table.row_bytes,
        [&] { inner_.get_rows(table, tokens, out); });
}
void ProfiledBackend::matmul(const Weight& w, const float* x, float* y, int n_tokens) {
  timed("matmul", type_of(w), matrix_bytes(w), [&] { inner_.matmul(w, x, y, n_tokens); });
}
void ProfiledBackend::matmul_many(std::span<const MatmulJob> jobs, const float* x, int n_tokens) {
  uint64_t total = 0;
  for (const MatmulJob& j : jobs) total += matrix_bytes(*j.w);
  const auto t0 = std::chrono::steady_clock::now();
  inner_.matmul_many(jobs, x, n_tokens);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const MatmulJob& j : jobs) {
    const uint64_t bytes = matrix_bytes(*j.w);
    add("matmul", type_of(*j.w), bytes,
        total ? seconds * double(bytes) / double(total) : seconds / double(jobs.size()));
  }
}
void ProfiledBackend::add_bias(float* y, const Weight& b, int64_t n_rows, int64_t width) {
  timed("add_bias", "", 0, [&] { inner_.add_bias(y, b, n_rows, width); });
}
void ProfiledBackend::rmsnorm(const float* x, const Weight& w, float* y, int64_t n_rows,
                              int64_t width, float eps) {
  timed("rmsnorm", "", 0, [&] { inner_.rmsnorm(x, w, y, n_rows, width, eps); });
}
void ProfiledBackend::rope(float* x, int n_tokens, int n_heads, int head_dim, int64_t pos0,
                           const RopeParams& p) {
  timed("rope", "", 0, [&] { inner_.rope(x, n_tokens, n_heads, head_dim, pos0, p); });
}
void ProfiledBackend::kv_store(const KvLayer& kv, const float* k, const float* v, int n_tokens,
                               int64_t pos0, int64_t k_width, int64_t v_width) {
  timed("kv_store", "", 0, [&] { inner_.kv_store(kv, k, v, n_tokens, pos0, k_width, v_width); });
}
void ProfiledBackend::attention(const float* q, const KvLayer& kv, float* out,
                                const AttentionParams& p) {
  // "q8_0" when K and V share a type, else "q8_0/f16" (K/V).
  const std::string kv_types =
      kv.k_type == kv.v_type ? kv_type_name(kv.k_type)
                             : std::string(kv_type_name(kv.k_type)) + "/" + kv_type_name(kv.v_type);
  timed("attention", kv_types.c_str(), 0, [&] { inner_.attention(q, kv, out, p); });
}
void ProfiledBackend::kv_shift(const KvLayer& kv, const KvShiftParams& p) {
  timed("kv_shift", "", 0, [&] { inner_.kv_shift(kv, p); });
}
void ProfiledBackend::swiglu(const float* gate, const float* up, float* out, int64_t n) {
  timed("swiglu", "", 0, [&] { inner_.swiglu(gate, up, out, n); });
}
void ProfiledBackend::add(float* x, const float* y, int64_t n) {
  timed("add", "", 0, [&] { inner_.add(x, y, n); });
}
void ProfiledBackend::copy_rows(const float* src, int64_t src_stride, float* dst,
                                int64_t dst_stride, int64_t n_rows, int64_t width) {
  timed("copy_rows", "", 0,
        [&] { inner_.copy_rows(src, src_stride, dst, dst_stride, n_rows, width); });
}
void ProfiledBackend::sigmoid_mul(float* x, const float* g, int64_t n) {
  timed("sigmoid_mul", "", 0, [&] { inner_.sigmoid_mul(x, g, n); });
}
void ProfiledBackend::sigmoid_scale_rows(float* y, const float* g, int64_t n_rows, int64_t width) {
  timed("sigmoid_scale_rows", "", 0, [&] { inner_.sigmoid_scale_rows(y, g, n_rows, width); });
}
void ProfiledBackend::l2norm(float* x, int n_tokens, int rows_per_token, int64_t width,
                             int64_t token_stride, float eps) {
  timed("l2norm", "", 0,
        [&] { inner_.l2norm(x, n_tokens, rows_per_token, width, token_stride, eps); });
}
void ProfiledBackend::rmsnorm_gated(const float* x, const Weight& w, const float* z, float* y,
                                    int64_t n_rows, int64_t width, float eps) {
  timed("rmsnorm_gated", "", 0, [&] { inner_.rmsnorm_gated(x, w, z, y, n_rows, width, eps); });
}
void ProfiledBackend::delta_net_gates(float* alpha, float* beta, const Weight& dt_bias,
                                      const Weight& a, int n_tokens, int n_heads) {
  timed("delta_net_gates", "", 0,
        [&] { inner_.delta_net_gates(alpha, beta, dt_bias, a, n_tokens, n_heads); });
}
void ProfiledBackend::ssm_conv(const ConvParams& p) {
  timed("ssm_conv", "", 0, [&] { inner_.ssm_conv(p); });
}
void ProfiledBackend::gated_delta_net(const DeltaNetParams& p) {
  timed("gated_delta_net", "", 0, [&] { inner_.gated_delta_net(p); });
}
void ProfiledBackend::moe_route(const float* logits, int n_tokens, int n_expert, int n_used,
                                bool normalize, float scale, int32_t* ids, float* weights) {
  timed("moe_route", "", 0, [&] {
    inner_.moe_route(logits, n_tokens, n_expert, n_used, normalize, scale, ids, weights);
  });
}
void ProfiledBackend::moe_matmul(const Weight& w, const float* x, bool x_per_slot,
                                 const int32_t* ids, int n_tokens, int n_used, float* y) {
  // Bytes: each distinct selected expert's matrix once (the kernel reads only those rows).
  std::vector<int32_t> experts(ids, ids + int64_t(n_tokens) * n_used);
  std::sort(experts.begin(), experts.end());
  const auto distinct = std::unique(experts.begin(), experts.end()) - experts.begin();
  timed("moe_matmul", type_of(w), uint64_t(distinct) * matrix_bytes(w),
        [&] { inner_.moe_matmul(w, x, x_per_slot, ids, n_tokens, n_used, y); });
}
void ProfiledBackend::moe_combine(const float* y, const float* weights, int n_tokens, int n_used,
                                  int64_t width, float* out) {
  timed("moe_combine", "", 0,
        [&] { inner_.moe_combine(y, weights, n_tokens, n_used, width, out); });
}

}  // namespace straw::ops
