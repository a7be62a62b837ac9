// Kernels of mixture-of-experts FFNs: routing (softmax, top-k, renormalisation), the expert
// matmul over the slots grouped by expert, the weighted sum of the experts' outputs and the shared
// expert's sigmoid gate. The math of each is the contract in ops/backend.h; the CPU ops
// (cpu/moe.cpp, cpu/elementwise.cpp) are the reference.
#include <algorithm>
#include <cmath>

#include "cuda/common.cuh"

namespace straw::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kRouteWarps = 4;          // tokens per block of moe_route
constexpr int kMatvecWarps = 4;         // rows per block of the expert matmul, one warp each
constexpr int kRun = kMaxMatvecTokens;  // slots of one expert per pass over its rows

// ---- routing ------------------------------------------------------------------------------------

// One warp per token; p (the softmax) in shared memory, n_expert floats per warp. The top n_used
// are found one at a time by a warp arg-max (ties to the lower id, as the CPU's scan), each chosen
// expert then marked -1 (probabilities are >= 0).
__global__ void k_moe_route(const float* __restrict__ logits, int n_tokens, int n_expert,
                            int n_used, bool normalize, float scale, int32_t* __restrict__ ids,
                            float* __restrict__ weights) {
  extern __shared__ float shared_p[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int t = int(blockIdx.x) * kRouteWarps + warp;
  if (t >= n_tokens) return;
  float* p = shared_p + size_t(warp) * n_expert;
  const float* l = logits + int64_t(t) * n_expert;
  float m = -INFINITY;
  for (int e = lane; e < n_expert; e += 32) m = fmaxf(m, l[e]);
  m = warp_max(m);
  float sum = 0.0f;
  for (int e = lane; e < n_expert; e += 32) {
    p[e] = expf(l[e] - m);
    sum += p[e];
  }
  const float inv = 1.0f / warp_sum(sum);
  for (int e = lane; e < n_expert; e += 32) p[e] *= inv;
  __syncwarp();
  int32_t* id = ids + int64_t(t) * n_used;
  float* w = weights + int64_t(t) * n_used;
  for (int k = 0; k < n_used; ++k) {
    float bv = -INFINITY;
    int best = n_expert;
    for (int e = lane; e < n_expert; e += 32)
      if (p[e] > bv) bv = p[e], best = e;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oe = __shfl_xor_sync(0xffffffffu, best, o);
      if (ov > bv || (ov == bv && oe < best)) bv = ov, best = oe;
    }
    if (best == n_expert) best = 0, bv = p[0];  // NaN logits: expert 0, as the CPU's scan
    if (lane == 0) id[k] = best, w[k] = bv;
    if (lane == best % 32) p[best] = -1.0f;
    __syncwarp();
  }
  if (lane != 0) return;
  if (normalize) {
    float s = 0.0f;  // llama.cpp: weights / max(sum(weights), 2^-14)
    for (int k = 0; k < n_used; ++k) s += w[k];
    s = fmaxf(s, 6.103515625e-5f);
    for (int k = 0; k < n_used; ++k) w[k] /= s;
  }
  if (scale != 0.0f && scale != 1.0f)
    for (int k = 0; k < n_used; ++k) w[k] *= scale;
}

__global__ void k_moe_combine(const float* __restrict__ y, const float* __restrict__ weights,
                              int n_tokens, int n_used, int64_t width, float* __restrict__ out) {
  const int64_t n = int64_t(n_tokens) * width;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / width, c = i % width;
    const float* w = weights + t * n_used;
    const float* yt = y + t * n_used * width + c;
    float acc = w[0] * yt[0];
    for (int k = 1; k < n_used; ++k) acc += w[k] * yt[k * width];
    out[i] = acc;
  }
}

__global__ void k_sigmoid_scale_rows(float* y, const float* __restrict__ g, int64_t n_rows,
                                     int64_t width) {
  const int64_t n = n_rows * width;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] *= sigmoidf(g[i / width]);
}

// ---- the expert matmul ------------------------------------------------------------------------
//
// Workspace (int32 unless said): order[n_slots]: the slots grouped by expert (ascending expert,
// then slot); group_expert[G], group_begin[G + 1]: the active experts and where their slots start
// in `order` (G = min(n_expert, n_slots)); n_active[1]; then, 256-byte aligned, the activations
// gathered in `order`: ActQ8 rows (quantized formats) or float rows.

struct MoeGroups {
  int32_t* order;
  int32_t* group_expert;
  int32_t* group_begin;
  int32_t* n_active;
};

int max_groups(const MoeMatmulArgs& a) {
  return std::min(a.n_expert, a.n_tokens * a.n_used);
}

MoeGroups groups_of(void* ws, const MoeMatmulArgs& a) {
  const int n_slots = a.n_tokens * a.n_used, G = max_groups(a);
  auto* p = static_cast<int32_t*>(ws);
  return {p, p + n_slots, p + n_slots + G, p + n_slots + 2 * G + 1};
}

size_t groups_bytes(const MoeMatmulArgs& a) {
  const size_t ints = size_t(a.n_tokens) * a.n_used + 2 * size_t(max_groups(a)) + 2;
  return (ints * sizeof(int32_t) + 255) / 256 * 256;
}

// One block: every thread takes experts e = tid, tid + blockDim, ..., counts their slots, then
// (after thread 0's prefix sum over the experts, which lists the active ones) writes them in slot
// order. Deterministic; n_slots reads per expert, a few microseconds for a prompt's 4096 slots.
// An id outside 0 .. n_expert - 1 (which moe_route never writes) counts as expert 0, so that every
// slot is computed and nothing reads outside the expert tensor.
__global__ void k_moe_group(const int32_t* __restrict__ ids, int n_slots, int n_expert,
                            MoeGroups g) {
  extern __shared__ int32_t start[];  // [n_expert]: slot count, then first position in order
  const auto expert_of = [&](int s) {
    const int e = ids[s];
    return e >= 0 && e < n_expert ? e : 0;
  };
  for (int e = threadIdx.x; e < n_expert; e += blockDim.x) {
    int n = 0;
    for (int s = 0; s < n_slots; ++s) n += expert_of(s) == e;
    start[e] = n;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int pos = 0, active = 0;
    for (int e = 0; e < n_expert; ++e) {
      const int n = start[e];
      start[e] = pos;
      if (n > 0) {
        g.group_expert[active] = e;
        g.group_begin[active] = pos;
        ++active;
      }
      pos += n;
    }
    g.group_begin[active] = pos;
    *g.n_active = active;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < n_expert; e += blockDim.x) {
    int pos = start[e];
    for (int s = 0; s < n_slots; ++s)
      if (expert_of(s) == e) g.order[pos++] = s;
  }
}

// Row j of the gathered activations: x row order[j] (per slot) or order[j] / n_used, as 8-bit
// levels (one warp per block of 32) or as floats.
__global__ void k_gather_q8(const float* __restrict__ x, int64_t n_in, int n_blocks,
                            const int32_t* __restrict__ order, bool per_slot, int n_used,
                            int8_t* __restrict__ qs, DS* __restrict__ ds) {
  const int b = int(blockIdx.x) * int(blockDim.x / 32) + int(threadIdx.x >> 5);
  if (b >= n_blocks) return;
  const int64_t j = blockIdx.y;
  const int64_t src = per_slot ? order[j] : order[j] / n_used;
  quantize_q8_block(x + src * n_in, b, qs + j * n_in, ds + j * n_blocks);
}

__global__ void k_gather_f32(const float* __restrict__ x, int64_t n_in,
                             const int32_t* __restrict__ order, bool per_slot, int n_used,
                             float* __restrict__ out) {
  const int64_t j = blockIdx.y;
  const int64_t src = per_slot ? order[j] : order[j] / n_used;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n_in;
       i += int64_t(gridDim.x) * blockDim.x)
    out[j * n_in + i] = x[src * n_in + i];
}

// y[order[j0 + t]][row] for the NT gathered rows j0.. (all of one expert) against weight row r,
// by the calling warp.
template <quant::Type T, int NT>
__device__ __forceinline__ void expert_rows(const uint8_t* __restrict__ r, int64_t n_in,
                                            const ActQ8& xq, const float* __restrict__ xf,
                                            int64_t j0, const int32_t* __restrict__ order,
                                            int64_t row, int64_t n_out, float* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  if constexpr (is_int8_format(T)) {
    const int64_t n_blocks = xq.stride / 32;
    const ActQ8 x{xq.qs + j0 * xq.stride, xq.ds + j0 * n_blocks, xq.stride};
    const int n_units = int(n_in / QDec<T>::kUnitElems);
    for (int u = lane; u < n_units; u += 32) QDec<T>::template dot_unit<NT>(r, u, x, acc);
  } else {
    const int n8 = int(n_in / 8);
    for (int j = lane; j < n8; j += 32) {
      float wv[8];
      QDec<T>::dequant8(r, j, wv);
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const float* xp = xf + (j0 + t) * n_in + 8 * int64_t(j);
#pragma unroll
        for (int k = 0; k < 8; ++k) acc[t] += wv[k] * xp[k];
      }
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const float v = warp_sum(acc[t]);
    if (lane == 0) y[int64_t(order[j0 + t]) * n_out + row] = v;
  }
}

// expert_rows<T, n> for a run of n (1..kRun) slots: the token count is a template argument there
// (the accumulators stay in registers).
template <quant::Type T, int NT>
__device__ __forceinline__ void run_rows(int n, const uint8_t* __restrict__ r, int64_t n_in,
                                         const ActQ8& xq, const float* __restrict__ xf, int64_t j0,
                                         const int32_t* __restrict__ order, int64_t row,
                                         int64_t n_out, float* __restrict__ y) {
  if constexpr (NT < kRun) {
    if (n != NT) return run_rows<T, NT + 1>(n, r, n_in, xq, xf, j0, order, row, n_out, y);
  }
  expert_rows<T, NT>(r, n_in, xq, xf, j0, order, row, n_out, y);
}

// Block (x, g): rows 4x .. 4x + 3 of active expert g (one warp each), over that expert's gathered
// rows in runs of up to kRun; blocks past the active experts return at once.
template <quant::Type T>
__global__ void __launch_bounds__(kMatvecWarps * 32)
    k_moe_matvec(const uint8_t* __restrict__ w, size_t expert_bytes, size_t row_bytes, int64_t n_in,
                 int64_t n_out, MoeGroups g, ActQ8 xq, const float* __restrict__ xf,
                 float* __restrict__ y) {
  const int group = blockIdx.y;
  if (group >= *g.n_active) return;
  const int64_t row = int64_t(blockIdx.x) * kMatvecWarps + (threadIdx.x >> 5);
  if (row >= n_out) return;
  const uint8_t* r = w + size_t(g.group_expert[group]) * expert_bytes + row * row_bytes;
  const int64_t end = g.group_begin[group + 1];
  for (int64_t j0 = g.group_begin[group]; j0 < end; j0 += kRun)
    run_rows<T, 1>(end - j0 < kRun ? int(end - j0) : kRun, r, n_in, xq, xf, j0, g.order, row, n_out,
                   y);
}

}  // namespace

void moe_route(const float* logits, int n_tokens, int n_expert, int n_used, bool normalize,
               float scale, int32_t* ids, float* weights, Stream stream) {
  if (n_tokens <= 0) return;
  if (n_used < 1 || n_used > n_expert || n_expert > kMaxRouteExperts)
    fail("internal error: CUDA moe_route choosing ", n_used, " of ", n_expert, " experts (at most ",
         kMaxRouteExperts, ")");
  const size_t shared = size_t(kRouteWarps) * n_expert * sizeof(float);
  k_moe_route<<<unsigned(ceil_div(n_tokens, kRouteWarps)), kRouteWarps * 32, shared, stream>>>(
      logits, n_tokens, n_expert, n_used, normalize, scale, ids, weights);
  STRAW_CUDA_CHECK_LAUNCH();
}

void moe_combine(const float* y, const float* weights, int n_tokens, int n_used, int64_t width,
                 float* out, Stream stream) {
  const int64_t n = int64_t(n_tokens) * width;
  if (n <= 0 || n_used <= 0) return;
  k_moe_combine<<<grid_stride_blocks(n, kThreads), kThreads, 0, stream>>>(y, weights, n_tokens,
                                                                          n_used, width, out);
  STRAW_CUDA_CHECK_LAUNCH();
}

void sigmoid_scale_rows(float* y, const float* g, int64_t n_rows, int64_t width, Stream stream) {
  const int64_t n = n_rows * width;
  if (n <= 0) return;
  k_sigmoid_scale_rows<<<grid_stride_blocks(n, kThreads), kThreads, 0, stream>>>(y, g, n_rows,
                                                                                 width);
  STRAW_CUDA_CHECK_LAUNCH();
}

size_t moe_matmul_workspace_bytes(const MoeMatmulArgs& a) {
  const int n_slots = a.n_tokens * a.n_used;
  const size_t acts = is_int8_format(a.type) ? act_q8_bytes(a.n_in, n_slots)
                                             : size_t(n_slots) * size_t(a.n_in) * sizeof(float);
  return groups_bytes(a) + acts;
}

void moe_matmul(const MoeMatmulArgs& a, void* workspace, Stream stream) {
  const int n_slots = a.n_tokens * a.n_used;
  if (n_slots <= 0 || a.n_out <= 0) return;
  if (n_slots > kMaxMoeSlots || a.n_expert < 1 || a.n_expert > kMaxMoeExperts || a.n_in % 32 != 0 ||
      a.n_in % quant::type_info(a.type).block_size != 0)
    fail("internal error: CUDA moe_matmul over ", n_slots, " slots (at most ", kMaxMoeSlots, "), ",
         a.n_expert, " experts (at most ", kMaxMoeExperts, "), rows of ", a.n_in, " ",
         quant::type_name(a.type));
  const MoeGroups g = groups_of(workspace, a);
  k_moe_group<<<1, 1024, size_t(a.n_expert) * sizeof(int32_t), stream>>>(a.ids, n_slots, a.n_expert,
                                                                         g);
  STRAW_CUDA_CHECK_LAUNCH();
  uint8_t* acts = static_cast<uint8_t*>(workspace) + groups_bytes(a);
  ActQ8 xq{};
  float* xf = nullptr;
  if (is_int8_format(a.type)) {
    const int n_blocks = int(a.n_in / 32);
    xq = act_q8_view(acts, a.n_in, n_slots);
    k_gather_q8<<<dim3(unsigned(ceil_div(n_blocks, 8)), unsigned(n_slots)), 256, 0, stream>>>(
        a.x, a.n_in, n_blocks, g.order, a.per_slot, a.n_used, const_cast<int8_t*>(xq.qs),
        const_cast<DS*>(xq.ds));
  } else {
    xf = reinterpret_cast<float*>(acts);
    k_gather_f32<<<dim3(unsigned(ceil_div(a.n_in, kThreads)), unsigned(n_slots)), kThreads, 0,
                   stream>>>(a.x, a.n_in, g.order, a.per_slot, a.n_used, xf);
  }
  STRAW_CUDA_CHECK_LAUNCH();
  const dim3 grid(unsigned(ceil_div(a.n_out, kMatvecWarps)), unsigned(max_groups(a)));
  with_format(a.type, "multiply experts of", [&](auto tag) {
    constexpr quant::Type T = decltype(tag)::value;
    k_moe_matvec<T><<<grid, kMatvecWarps * 32, 0, stream>>>(static_cast<const uint8_t*>(a.w),
                                                            a.expert_bytes, a.row_bytes, a.n_in,
                                                            a.n_out, g, xq, xf, a.y);
  });
  STRAW_CUDA_CHECK_LAUNCH();
}

}  // namespace straw::cuda
