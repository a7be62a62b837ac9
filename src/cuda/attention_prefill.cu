// Tiled flash attention for prompt batches, on tensor cores (WMMA, binary16 inputs, float32
// accumulation).
//
// Block (tile of BQ query tokens, query head h) walks the visible keys in tiles of BK: S = Q K^T
// (Q pre-scaled) on tensor cores into shared memory, the causal mask and the online softmax per
// row on the CUDA cores (P in binary16, running max m and sum l per row), then P V on tensor cores
// and O = O * alpha + P V in shared memory. GQA: head h reads KV head h / (n_heads / n_kv_heads);
// the KV tiles of a group are re-read from L2 by each head's blocks.
//
// Shared memory (halves padded by 8 and floats by 4 per row against bank conflicts; every WMMA
// pointer 32-byte aligned): Q [BQ][D+8] h | K [BK][D+8] h (also the P V result [BQ][D+4] f) |
// V [BK][D+8] h | S [BQ][BK+4] f | P [BQ][BK+8] h | O [BQ][D+4] f | m, l, alpha [BQ] f.
#include <cuda_fp16.h>
#include <mma.h>

#include <algorithm>
#include <cmath>

#include "cuda/common.cuh"
#include "util/str.h"

namespace straw::cuda {

namespace {

namespace wmma = nvcuda::wmma;

constexpr int kThreads = 128;

template <int D>
struct Tiles {
  static constexpr int BQ = D <= 128 ? 32 : 16;
  static constexpr int BK = D <= 128 ? 64 : 32;
  static constexpr int LDH = D + 8, LDS = BK + 4, LDP = BK + 8, LDO = D + 4;
  static constexpr size_t kQ = size_t(BQ) * LDH * 2, kK = size_t(BK) * LDH * 2;
  static constexpr size_t kS = size_t(BQ) * LDS * 4, kP = size_t(BQ) * LDP * 2;
  static constexpr size_t kO = size_t(BQ) * LDO * 4;
  static constexpr size_t kBytes = kQ + 2 * kK + kS + kP + kO + 3 * BQ * 4;
  static_assert(size_t(BQ) * LDO * 4 <= kK, "the P V result must fit the K tile it reuses");
};

template <bool F16>
__device__ __forceinline__ void load_row8(const void* base, int64_t i, __half* dst) {
  if (F16) {
    *reinterpret_cast<uint4*>(dst) =
        *reinterpret_cast<const uint4*>(static_cast<const __half*>(base) + i);
  } else {
    const float4* s = reinterpret_cast<const float4*>(static_cast<const float*>(base) + i);
    const float4 a = s[0], b = s[1];
    __half2* d = reinterpret_cast<__half2*>(dst);
    d[0] = __floats2half2_rn(a.x, a.y);
    d[1] = __floats2half2_rn(a.z, a.w);
    d[2] = __floats2half2_rn(b.x, b.y);
    d[3] = __floats2half2_rn(b.z, b.w);
  }
}

template <int D, bool F16>
__global__ void __launch_bounds__(kThreads) k_attn_prefill(AttnArgs a) {
  using L = Tiles<D>;
  constexpr int BQ = L::BQ, BK = L::BK, LDH = L::LDH, LDS = L::LDS, LDP = L::LDP, LDO = L::LDO;
  extern __shared__ __align__(128) unsigned char smem[];
  __half* Qs = reinterpret_cast<__half*>(smem);
  __half* Ks = reinterpret_cast<__half*>(smem + L::kQ);
  float* PV = reinterpret_cast<float*>(Ks);
  __half* Vs = reinterpret_cast<__half*>(smem + L::kQ + L::kK);
  float* S = reinterpret_cast<float*>(smem + L::kQ + 2 * L::kK);
  __half* P = reinterpret_cast<__half*>(smem + L::kQ + 2 * L::kK + L::kS);
  float* O = reinterpret_cast<float*>(smem + L::kQ + 2 * L::kK + L::kS + L::kP);
  float* row_m = O + BQ * LDO;
  float* row_l = row_m + BQ;
  float* row_a = row_l + BQ;

  const int tid = threadIdx.x, warp = tid >> 5;
  const int q0 = int(blockIdx.x) * BQ, h = blockIdx.y;
  const int kvh = h / (a.n_heads / a.n_kv_heads);
  const int nq = min(BQ, a.n_tokens - q0);
  const int64_t pos0 = step_pos(a.pos);
  const int64_t n_keys = pos0 + q0 + nq;  // keys visible to the last query of the tile
  const int64_t kv_row = int64_t(a.n_kv_heads) * D;

  for (int i = tid; i < BQ * D; i += kThreads) {
    const int r = i / D, c = i % D;
    const float v = r < nq ? a.q[(int64_t(q0 + r) * a.n_heads + h) * D + c] * a.scale : 0.0f;
    Qs[r * LDH + c] = __float2half_rn(v);
    O[r * LDO + c] = 0.0f;
  }
  if (tid < BQ) row_m[tid] = -INFINITY, row_l[tid] = 0.0f;

  constexpr int kTpr = kThreads / BQ;  // threads per row in the softmax step
  for (int64_t kt = 0; kt < n_keys; kt += BK) {
    __syncthreads();  // the previous tile's K / V / P V are no longer read
    for (int i = tid; i < BK * (D / 8); i += kThreads) {
      const int r = i / (D / 8), c = (i % (D / 8)) * 8;
      const int64_t key = kt + r;
      if (key < n_keys) {
        load_row8<F16>(a.k, key * kv_row + int64_t(kvh) * D + c, Ks + r * LDH + c);
        load_row8<F16>(a.v, key * kv_row + int64_t(kvh) * D + c, Vs + r * LDH + c);
      } else {  // zeros, never NaN: masked probabilities multiply these rows
        *reinterpret_cast<uint4*>(Ks + r * LDH + c) = make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4*>(Vs + r * LDH + c) = make_uint4(0, 0, 0, 0);
      }
    }
    __syncthreads();
    // S = Q K^T
    for (int tile = warp; tile < (BQ / 16) * (BK / 16); tile += kThreads / 32) {
      const int ti = tile / (BK / 16), tj = tile % (BK / 16);
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
      wmma::fill_fragment(c, 0.0f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb;
        wmma::load_matrix_sync(fa, Qs + ti * 16 * LDH + kk * 16, LDH);
        wmma::load_matrix_sync(fb, Ks + tj * 16 * LDH + kk * 16, LDH);
        wmma::mma_sync(c, fa, fb, c);
      }
      wmma::store_matrix_sync(S + ti * 16 * LDS + tj * 16, c, LDS, wmma::mem_row_major);
    }
    __syncthreads();
    // Causal mask and online softmax: kTpr consecutive lanes per row.
    {
      const int r = tid / kTpr, sub = tid % kTpr;
      const int64_t qpos = pos0 + q0 + r;
      const bool row_valid = r < nq;
      float mt = -INFINITY;
      for (int c = sub; c < BK; c += kTpr) {
        const bool vis = row_valid && kt + c <= qpos;
        const float s = vis ? S[r * LDS + c] : -INFINITY;
        S[r * LDS + c] = s;
        mt = fmaxf(mt, s);
      }
#pragma unroll
      for (int o = kTpr / 2; o > 0; o >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
      const float m_old = row_m[r];
      const float m_new = fmaxf(m_old, mt);
      const bool none = m_new == -INFINITY;  // no visible key yet for this row
      float sum = 0.0f;
      for (int c = sub; c < BK; c += kTpr) {
        const __half p = __float2half_rn(none ? 0.0f : expf(S[r * LDS + c] - m_new));
        P[r * LDP + c] = p;
        sum += __half2float(p);
      }
#pragma unroll
      for (int o = kTpr / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      __syncwarp();
      if (sub == 0) {
        const float alpha = none ? 1.0f : expf(m_old - m_new);
        row_m[r] = m_new;
        row_l[r] = row_l[r] * alpha + sum;
        row_a[r] = alpha;
      }
    }
    __syncthreads();
    // PV = P V (into the K tile's memory), then O = O * alpha + PV.
    for (int tile = warp; tile < (BQ / 16) * (D / 16); tile += kThreads / 32) {
      const int ti = tile / (D / 16), tn = tile % (D / 16);
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
      wmma::fill_fragment(c, 0.0f);
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> fb;
        wmma::load_matrix_sync(fa, P + ti * 16 * LDP + kk * 16, LDP);
        wmma::load_matrix_sync(fb, Vs + kk * 16 * LDH + tn * 16, LDH);
        wmma::mma_sync(c, fa, fb, c);
      }
      wmma::store_matrix_sync(PV + ti * 16 * LDO + tn * 16, c, LDO, wmma::mem_row_major);
    }
    __syncthreads();
    for (int i = tid; i < BQ * D; i += kThreads) {
      const int r = i / D, c = i % D;
      O[r * LDO + c] = O[r * LDO + c] * row_a[r] + PV[r * LDO + c];
    }
  }
  __syncthreads();
  for (int i = tid; i < nq * D; i += kThreads) {
    const int r = i / D, c = i % D;
    a.out[(int64_t(q0 + r) * a.n_heads + h) * D + c] = O[r * LDO + c] / row_l[r];
  }
}

template <int D, bool F16>
void launch(const AttnArgs& a, Stream stream) {
  using L = Tiles<D>;
  auto* kernel = &k_attn_prefill<D, F16>;
  STRAW_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(L::kBytes)));
  const dim3 grid(unsigned(ceil_div(a.n_tokens, L::BQ)), unsigned(a.n_heads));
  kernel<<<grid, kThreads, L::kBytes, stream>>>(a);
  STRAW_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool attention_prefill_supported(const AttnArgs& a) {
  return a.k_quant == KvQuant::None && a.v_quant == KvQuant::None && a.head_dim == a.head_dim_v &&
         (a.head_dim == 64 || a.head_dim == 128 || a.head_dim == 256) && a.n_kv_heads > 0 &&
         a.n_heads % a.n_kv_heads == 0;
}

void attention_prefill(const AttnArgs& a, Stream stream) {
  if (!attention_prefill_supported(a))
    fail("internal error: tiled attention for head sizes ", a.head_dim, " / ", a.head_dim_v);
  if (a.n_tokens <= 0) return;
  switch (a.head_dim) {
    case 64:
      return a.f16 ? launch<64, true>(a, stream) : launch<64, false>(a, stream);
    case 128:
      return a.f16 ? launch<128, true>(a, stream) : launch<128, false>(a, stream);
    default:
      return a.f16 ? launch<256, true>(a, stream) : launch<256, false>(a, stream);
  }
}

}  // namespace straw::cuda
