// Flash-decoding: attention for a few query tokens over a long KV cache.
//
// The visible keys 0 .. pos + t of query token t are cut into n_splits ranges of `chunk` keys
// (chunk = the key count over n_splits, at least 32, rounded up to 32; computed on the device from
// the step position, so the launch shape depends only on n_ctx and a CUDA Graph stays valid as the
// cache grows). Block (split, kv head and head group, token) reduces its range to a partial
// softmax for `hb` query heads that share one KV head (GQA: K and V are read once for the group):
// the running max m, the sum of exponentials l and the unnormalised output acc. The combine kernel
// merges the partials: out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s.
//
// Partials layout: [n_tokens][n_heads][n_splits][head_dim_v + 2] floats (acc, then m, then l).
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "cuda/common.cuh"
#include "util/str.h"

namespace straw::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kTile = 32;      // keys scored per step (one per lane in the softmax update)
constexpr int kMaxHeads = 16;  // query heads per block
constexpr int kMaxItems = 8;   // float2 outputs per thread: hb * head_dim_v <= 2 * 128 * 8
constexpr int kMaxSplits = 64;

// Cache element formats (template arguments of the kernel).
enum : int { kF32 = 0, kF16 = 1, kQ8 = 2, kQ4 = 3 };

int format_of(bool f16, KvQuant q) {
  return q == KvQuant::Q8_0 ? kQ8 : q == KvQuant::Q4_0 ? kQ4 : f16 ? kF16 : kF32;
}

// Elements e, e + 1 (e even) of cache row `row` (rows of `width` elements) as floats. Quantized
// rows are blocks of an fp16 scale and 32 levels: q8_0 int8 (34 bytes), q4_0 nibbles (18 bytes:
// element j < 16 in the low nibble of byte j, element j + 16 in its high nibble; level - 8).
template <int T>
__device__ __forceinline__ float2 load2(const void* base, int64_t row, int64_t width, int64_t e) {
  if constexpr (T == kF32) {
    return *reinterpret_cast<const float2*>(static_cast<const float*>(base) + row * width + e);
  } else if constexpr (T == kF16) {
    return __half22float2(
        *reinterpret_cast<const __half2*>(static_cast<const __half*>(base) + row * width + e));
  } else {
    constexpr int kBytes = T == kQ8 ? 34 : 18;
    const uint8_t* b =
        static_cast<const uint8_t*>(base) + (row * (width / 32) + e / 32) * kBytes;
    const float d = __half2float(*reinterpret_cast<const __half*>(b));
    const int w = int(e % 32);
    if constexpr (T == kQ8) {
      const int8_t* q = reinterpret_cast<const int8_t*>(b + 2);
      return make_float2(d * float(q[w]), d * float(q[w + 1]));
    } else {
      const uint8_t* q = b + 2;
      if (w < 16) return make_float2(d * float((q[w] & 15) - 8), d * float((q[w + 1] & 15) - 8));
      return make_float2(d * float((q[w - 16] >> 4) - 8), d * float((q[w - 15] >> 4) - 8));
    }
  }
}

int heads_per_block(int group, int head_dim_v) {
  for (int hb = std::min(group, kMaxHeads); hb > 1; --hb)
    if (group % hb == 0 && hb * head_dim_v <= 2 * kThreads * kMaxItems) return hb;
  return 1;
}

template <int KT, int VT>
__global__ void __launch_bounds__(kThreads)
    k_attn_split(AttnArgs a, int n_splits, int hb, float* __restrict__ part) {
  extern __shared__ float smem[];
  const int D = a.head_dim, DV = a.head_dim_v;
  float* qs = smem;         // [hb][D] queries, pre-scaled
  float* sc = qs + hb * D;  // [hb][kTile] scores, then probabilities
  float* row_m = sc + hb * kTile;
  float* row_l = row_m + hb;
  float* row_a = row_l + hb;  // rescale factor of the current step
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int group = a.n_heads / a.n_kv_heads;
  const int blocks_per_kv = group / hb;
  const int kvh = int(blockIdx.y) / blocks_per_kv;
  const int h0 = kvh * group + (int(blockIdx.y) % blocks_per_kv) * hb;
  const int t = blockIdx.z, split = blockIdx.x;

  const int64_t n_keys = step_pos(a.pos) + t + 1;
  int64_t chunk = (n_keys + n_splits - 1) / n_splits;
  chunk = (std::max<int64_t>(chunk, kTile) + kTile - 1) / kTile * kTile;
  const int64_t k0 = split * chunk, k1 = std::min(n_keys, k0 + chunk);
  float* slot0 = part + ((int64_t(t) * a.n_heads + h0) * n_splits + split) * (DV + 2);
  const int64_t slot_stride = int64_t(n_splits) * (DV + 2);  // next head, same split

  if (k0 >= k1) {  // an empty range: contributes nothing to the combine
    for (int i = tid; i < hb * (DV + 2); i += kThreads) {
      const int hi = i / (DV + 2), c = i % (DV + 2);
      slot0[hi * slot_stride + c] = c == DV ? -INFINITY : 0.0f;
    }
    return;
  }
  for (int i = tid; i < hb * D; i += kThreads)
    qs[i] = a.q[(int64_t(t) * a.n_heads + h0 + i / D) * D + i % D] * a.scale;
  if (tid < hb) row_m[tid] = -INFINITY, row_l[tid] = 0.0f;

  const int64_t k_row = int64_t(a.n_kv_heads) * D, v_row = int64_t(a.n_kv_heads) * DV;
  const int64_t k_off = int64_t(kvh) * D, v_off = int64_t(kvh) * DV;
  const int n_items = hb * DV / 2;
  float2 acc[kMaxItems];
#pragma unroll
  for (int r = 0; r < kMaxItems; ++r) acc[r] = make_float2(0.0f, 0.0f);
  __syncthreads();

  for (int64_t kt = k0; kt < k1; kt += kTile) {
    // Scores: warp w scores keys kt + 8w .. kt + 8w + 7 for every head of the group.
    for (int kk = 0; kk < kTile / 4; ++kk) {
      const int jl = warp * (kTile / 4) + kk;
      const int64_t j = kt + jl;
      if (j < k1) {
        float p[kMaxHeads];
#pragma unroll
        for (int i = 0; i < kMaxHeads; ++i) p[i] = 0.0f;
        for (int d2 = lane; d2 < D / 2; d2 += 32) {
          const float2 kv = load2<KT>(a.k, j, k_row, k_off + 2 * d2);
#pragma unroll
          for (int i = 0; i < kMaxHeads; ++i)
            if (i < hb) p[i] += qs[i * D + 2 * d2] * kv.x + qs[i * D + 2 * d2 + 1] * kv.y;
        }
#pragma unroll
        for (int i = 0; i < kMaxHeads; ++i)
          if (i < hb) {
            const float s = warp_sum(p[i]);
            if (lane == 0) sc[i * kTile + jl] = s;
          }
      } else if (lane == 0) {
        for (int i = 0; i < hb; ++i) sc[i * kTile + jl] = -INFINITY;
      }
    }
    __syncthreads();
    // Online softmax: warp w updates heads w, w + 4, ...; lane = key of the tile.
    for (int i = warp; i < hb; i += 4) {
      const float s = sc[i * kTile + lane];
      const float m_old = row_m[i];
      const float m_new = fmaxf(m_old, warp_max(s));  // finite: key kt is always in range
      const float e = expf(s - m_new);
      const float sum = warp_sum(e);
      sc[i * kTile + lane] = e;
      if (lane == 0) {
        const float alpha = expf(m_old - m_new);
        row_m[i] = m_new;
        row_l[i] = row_l[i] * alpha + sum;
        row_a[i] = alpha;
      }
    }
    __syncthreads();
    // Values: thread items are (head, pair of output dims); V rows are shared by the group.
    const int nk = int(std::min<int64_t>(kTile, k1 - kt));
#pragma unroll
    for (int r = 0; r < kMaxItems; ++r) {
      const int item = tid + kThreads * r;
      if (item < n_items) {
        const int i = item / (DV / 2), d2 = item % (DV / 2);
        const float alpha = row_a[i];
        float2 o = make_float2(acc[r].x * alpha, acc[r].y * alpha);
        for (int jl = 0; jl < nk; ++jl) {
          const float pj = sc[i * kTile + jl];
          const float2 vv = load2<VT>(a.v, kt + jl, v_row, v_off + 2 * d2);
          o.x += pj * vv.x;
          o.y += pj * vv.y;
        }
        acc[r] = o;
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < kMaxItems; ++r) {
    const int item = tid + kThreads * r;
    if (item < n_items) {
      const int i = item / (DV / 2), d2 = item % (DV / 2);
      slot0[i * slot_stride + 2 * d2] = acc[r].x;
      slot0[i * slot_stride + 2 * d2 + 1] = acc[r].y;
    }
  }
  if (tid < hb) {
    slot0[tid * slot_stride + DV] = row_m[tid];
    slot0[tid * slot_stride + DV + 1] = row_l[tid];
  }
}

// Block (head, token): merges the n_splits partials of one query head.
__global__ void k_attn_combine(const float* __restrict__ part, int n_splits, int n_heads, int DV,
                               float* __restrict__ out) {
  __shared__ float weight[kMaxSplits];
  __shared__ float inv_l;
  const int h = blockIdx.x, t = blockIdx.y;
  const float* base = part + (int64_t(t) * n_heads + h) * n_splits * (DV + 2);
  if (threadIdx.x == 0) {
    float m = -INFINITY;
    for (int s = 0; s < n_splits; ++s) m = fmaxf(m, base[s * (DV + 2) + DV]);
    float l = 0.0f;
    for (int s = 0; s < n_splits; ++s) {
      const float w = expf(base[s * (DV + 2) + DV] - m);  // 0 for empty splits (m_s = -inf)
      weight[s] = w;
      l += w * base[s * (DV + 2) + DV + 1];
    }
    inv_l = 1.0f / l;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < DV; d += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < n_splits; ++s) o += weight[s] * base[s * (DV + 2) + d];
    out[(int64_t(t) * n_heads + h) * DV + d] = o * inv_l;
  }
}

void check_shape(const AttnArgs& a) {
  if (a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0)
    fail("attention: ", a.n_heads, " query heads are not a multiple of ", a.n_kv_heads,
         " KV heads");
  if (a.head_dim % 2 != 0 || a.head_dim_v % 2 != 0 || a.head_dim > 512 || a.head_dim_v > 512)
    fail("the CUDA backend supports even head sizes up to 512, not ", a.head_dim, " / ",
         a.head_dim_v);
  if ((a.k_quant != KvQuant::None && a.head_dim % 32 != 0) ||
      (a.v_quant != KvQuant::None && a.head_dim_v % 32 != 0))
    fail("a quantized KV cache needs head sizes that are multiples of 32, not ", a.head_dim,
         " / ", a.head_dim_v);
}

}  // namespace

int attention_splits(const AttnArgs& a, int sm_count) {
  check_shape(a);
  const int group = a.n_heads / a.n_kv_heads;
  const int64_t per_split =
      int64_t(a.n_kv_heads) * (group / heads_per_block(group, a.head_dim_v)) * a.n_tokens;
  const int64_t want =
      ceil_div(2 * int64_t(std::max(sm_count, 1)), std::max<int64_t>(per_split, 1));
  const int64_t by_ctx = std::max<int64_t>(1, ceil_div(a.n_ctx, kTile));
  return int(std::clamp<int64_t>(std::min(want, by_ctx), 1, kMaxSplits));
}

size_t attention_partials_bytes(const AttnArgs& a, int n_splits) {
  return size_t(a.n_tokens) * size_t(a.n_heads) * size_t(n_splits) * size_t(a.head_dim_v + 2) *
         sizeof(float);
}

namespace {

// k_attn_split for the cache formats: float pairs (f32 / f16, K and V alike) and every pairing
// with a quantized side.
template <int KT>
void launch_split_v(int vt, dim3 grid, size_t smem, Stream stream, const AttnArgs& a, int n_splits,
                    int hb, float* partials) {
  switch (vt) {
    case kF32:
      k_attn_split<KT, kF32><<<grid, kThreads, smem, stream>>>(a, n_splits, hb, partials);
      return;
    case kF16:
      k_attn_split<KT, kF16><<<grid, kThreads, smem, stream>>>(a, n_splits, hb, partials);
      return;
    case kQ8:
      k_attn_split<KT, kQ8><<<grid, kThreads, smem, stream>>>(a, n_splits, hb, partials);
      return;
    default:
      k_attn_split<KT, kQ4><<<grid, kThreads, smem, stream>>>(a, n_splits, hb, partials);
      return;
  }
}

void launch_split(int kt, int vt, dim3 grid, size_t smem, Stream stream, const AttnArgs& a,
                  int n_splits, int hb, float* partials) {
  switch (kt) {
    case kF32:
      return launch_split_v<kF32>(vt, grid, smem, stream, a, n_splits, hb, partials);
    case kF16:
      return launch_split_v<kF16>(vt, grid, smem, stream, a, n_splits, hb, partials);
    case kQ8:
      return launch_split_v<kQ8>(vt, grid, smem, stream, a, n_splits, hb, partials);
    default:
      return launch_split_v<kQ4>(vt, grid, smem, stream, a, n_splits, hb, partials);
  }
}

}  // namespace

void attention_decode(const AttnArgs& a, int n_splits, float* partials, Stream stream) {
  check_shape(a);
  if (a.n_tokens <= 0) return;
  if (n_splits < 1 || n_splits > kMaxSplits)
    fail("internal error: ", n_splits, " attention splits");
  const int group = a.n_heads / a.n_kv_heads;
  const int hb = heads_per_block(group, a.head_dim_v);
  if (hb * a.head_dim_v > 2 * kThreads * kMaxItems)
    fail("the CUDA backend supports value heads up to ", 2 * kThreads * kMaxItems, " wide, not ",
         a.head_dim_v);
  const dim3 grid(unsigned(n_splits), unsigned(a.n_kv_heads * (group / hb)), unsigned(a.n_tokens));
  const size_t smem =
      (size_t(hb) * a.head_dim + size_t(hb) * kTile + 3 * size_t(hb)) * sizeof(float);
  launch_split(format_of(a.f16, a.k_quant), format_of(a.f16, a.v_quant), grid, smem, stream, a,
               n_splits, hb, partials);
  STRAW_CUDA_CHECK_LAUNCH();
  k_attn_combine<<<dim3(unsigned(a.n_heads), unsigned(a.n_tokens)), 128, 0, stream>>>(
      partials, n_splits, a.n_heads, a.head_dim_v, a.out);
  STRAW_CUDA_CHECK_LAUNCH();
}

}  // namespace straw::cuda
