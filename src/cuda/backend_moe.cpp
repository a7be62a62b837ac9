// CudaBackend's mixture-of-experts ops (qwen3moe, qwen35moe): argument checks, then one record
// each (recorded into CUDA Graphs like every other op: the expert matmul groups its slots on the
// device, so a decode step never waits for the host).
#include <algorithm>

#include "cuda/backend_impl.h"
#include "util/str.h"

namespace straw::cuda {

void CudaBackend::sigmoid_scale_rows(float* y, const float* g, int64_t n_rows, int64_t width) {
  Impl& s = *impl_;
  if (n_rows <= 0 || width <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  s.need_device(y, size_t(n_rows * width) * sizeof(float), "gated rows");
  s.need_device(g, size_t(n_rows) * sizeof(float), "row gates");
  s.submit(SigmoidScaleRowsRec{y, g, n_rows, width});
}

void CudaBackend::moe_route(const float* logits, int n_tokens, int n_expert, int n_used,
                            bool normalize, float scale, int32_t* ids, float* weights) {
  Impl& s = *impl_;
  if (n_tokens <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  if (n_used <= 0 || n_used > n_expert)
    fail("internal error: ", n_used, " experts used of ", n_expert);
  if (n_expert > kMaxRouteExperts)
    fail("the CUDA backend routes at most ", kMaxRouteExperts, " experts, this model has ",
         n_expert, ": keep its MoE FFNs on the CPU (--cpu-moe)");
  const size_t slots = size_t(n_tokens) * n_used;
  s.need_device(logits, size_t(n_tokens) * n_expert * sizeof(float), "router logits");
  s.need_device(ids, slots * sizeof(int32_t), "expert ids");
  s.need_device(weights, slots * sizeof(float), "expert weights");
  s.submit(MoeRouteRec{logits, n_tokens, n_expert, n_used, normalize, scale, ids, weights});
}

void CudaBackend::moe_matmul(const ops::Weight& w, const float* x, bool x_per_slot,
                             const int32_t* ids, int n_tokens, int n_used, float* y) {
  Impl& s = *impl_;
  const int64_t n_slots = int64_t(n_tokens) * n_used;
  if (n_slots <= 0 || w.n_out <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  if (w.n_expert <= 1) fail("internal error: moe_matmul on a weight that is not an expert tensor");
  if (!cuda_supports(w.type))
    fail("the CUDA backend has no kernels for ", quant::type_name(w.type),
         " expert tensors; keep the experts on the CPU (--cpu-moe)");
  if (w.n_expert > kMaxMoeExperts || w.n_in % 32 != 0 || n_used > kMaxMoeSlots)
    fail("the CUDA backend's expert matmul takes at most ", kMaxMoeExperts,
         " experts with rows of a multiple of 32 values; this tensor has ", w.n_expert,
         " experts with rows of ", w.n_in, ": keep the experts on the CPU (--cpu-moe)");
  s.need_device(x, size_t(x_per_slot ? n_slots : n_tokens) * w.n_in * sizeof(float),
                "expert input");
  s.need_device(ids, size_t(n_slots) * sizeof(int32_t), "expert ids");
  s.need_device(y, size_t(n_slots) * w.n_out * sizeof(float), "expert output");
  MoeMatmulArgs a;
  a.type = w.type, a.w = s.resolve(w), a.expert_bytes = w.expert_bytes, a.row_bytes = w.row_bytes;
  a.n_expert = int(w.n_expert), a.n_in = w.n_in, a.n_out = w.n_out;
  a.per_slot = x_per_slot, a.n_used = n_used;
  // A launch takes at most kMaxMoeSlots slots: longer micro-batches go in runs of tokens.
  const int run = std::min(n_tokens, kMaxMoeSlots / n_used);
  a.n_tokens = run;
  s.ensure(s.moe, moe_matmul_workspace_bytes(a), "the expert matmul's workspace");
  for (int t0 = 0; t0 < n_tokens; t0 += run) {
    const int64_t slot0 = int64_t(t0) * n_used;
    a.n_tokens = std::min(run, n_tokens - t0);
    a.x = x + (x_per_slot ? slot0 : t0) * w.n_in;
    a.ids = ids + slot0;
    a.y = y + slot0 * w.n_out;
    s.submit(MoeMatmulRec{a, s.moe.ptr});
  }
}

void CudaBackend::moe_combine(const float* y, const float* weights, int n_tokens, int n_used,
                              int64_t width, float* out) {
  Impl& s = *impl_;
  if (n_tokens <= 0 || width <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  if (n_used <= 0) fail("internal error: moe_combine of ", n_used, " experts");
  const size_t slots = size_t(n_tokens) * n_used;
  s.need_device(y, slots * width * sizeof(float), "expert outputs");
  s.need_device(weights, slots * sizeof(float), "expert weights");
  s.need_device(out, size_t(n_tokens) * width * sizeof(float), "weighted sum of the experts");
  s.submit(MoeCombineRec{y, weights, n_tokens, n_used, width, out});
}

}  // namespace straw::cuda
