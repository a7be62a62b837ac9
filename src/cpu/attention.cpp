// CPU attention over the KV cache and the KV store: the SIMD kernels (attention_impl.h) when the
// head sizes allow, else the reference: causal softmax(q K^T * scale) V with grouped-query heads,
// one (token, head) pair per work item. Over a Q8_0 / Q4_0 K cache the scores are integer dot
// products of the key's levels with the query quantized to 8 bits (quantize_query), as llama.cpp
// computes them: q.k = sum over blocks of 32 of d_q d_k sum_i q_i k_i.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/cpu_backend.h"
#include "quant/f16.h"
#include "quant/quant.h"
#include "util/str.h"

namespace straw::cpu {

namespace {

// Row p of one head's rows (cache_head: n elements of type t) as floats; F16, Q8_0 and Q4_0 rows
// are converted into `tmp` (for the quantized types, n is a multiple of 32: whole blocks).
const float* cache_row(ops::KvType t, const uint8_t* head, int64_t p, int64_t n, float* tmp) {
  const uint8_t* src = head + p * ops::kv_row_bytes(t, n);
  switch (t) {
    case ops::KvType::F32:
      return reinterpret_cast<const float*>(src);
    case ops::KvType::F16:
      for (int64_t i = 0; i < n; ++i)
        tmp[i] = quant::fp16_to_fp32(reinterpret_cast<const uint16_t*>(src)[i]);
      return tmp;
    case ops::KvType::Q8_0:
      quant::dequantize_row(quant::Type::Q8_0, src, tmp, n);
      return tmp;
    case ops::KvType::Q4_0:
      quant::dequantize_row(quant::Type::Q4_0, src, tmp, n);
      return tmp;
  }
  return tmp;
}

// Stores `width` floats as row p of one head's rows (cache_head) of type t. Quantized rows use
// llama.cpp's reference rounding (quantize_row_q8_0_ref / quantize_row_q4_0_ref), so that a cache
// holds what llama.cpp's would.
void store_row(ops::KvType t, uint8_t* head, int64_t p, const float* x, int64_t width,
               const VecKernels* vk) {
  uint8_t* dst = head + p * ops::kv_row_bytes(t, width);
  switch (t) {
    case ops::KvType::F32:
      std::copy_n(x, width, reinterpret_cast<float*>(dst));
      return;
    case ops::KvType::F16:
      if (vk) {
        vk->f32_to_f16(x, reinterpret_cast<uint16_t*>(dst), width);
      } else {
        for (int64_t i = 0; i < width; ++i)
          reinterpret_cast<uint16_t*>(dst)[i] = quant::fp32_to_fp16(x[i]);
      }
      return;
    case ops::KvType::Q8_0:
      quant::quantize_row(quant::Type::Q8_0, x, dst, width);
      return;
    case ops::KvType::Q4_0:
      quant::quantize_row(quant::Type::Q4_0, x, dst, width);
      return;
  }
}

// Query tokens per work item of the SIMD kernel when a batch has many (prefill).
constexpr int kQueryBlock = 16;

// When there are few work items (decode, a short prompt chunk), the keys of each are split into
// ranges of at least this many keys (multiples of the kernel's key block), so that every thread
// has work even when there are fewer KV heads than threads, and the ranges' softmax states are
// merged afterwards.
constexpr int64_t kMinSplitKeys = 4 * kAttnKeyBlock;

// q.k for one key head of a Q8_0 / Q4_0 cache (row `src`, dim elements) against a query head from
// quantize_query: the integer sum per block of 32 times both scales.
float quantized_score(ops::KvType t, const uint8_t* src, int dim, const int8_t* q,
                      const float* dq) {
  float s = 0.0f;
  for (int b = 0; b < dim / 32; ++b) {
    uint16_t h;
    std::memcpy(&h, src, 2);
    int32_t sum = 0;
    if (t == ops::KvType::Q8_0) {
      const auto* k = reinterpret_cast<const int8_t*>(src + 2);
      for (int i = 0; i < 32; ++i) sum += int32_t(q[32 * b + i]) * k[i];
      src += 34;
    } else {
      // Low nibbles: elements 0..15, high nibbles: 16..31; value level - 8.
      for (int i = 0; i < 16; ++i) {
        sum += int32_t(q[32 * b + i]) * ((src[2 + i] & 0x0F) - 8);
        sum += int32_t(q[32 * b + 16 + i]) * ((src[2 + i] >> 4) - 8);
      }
      src += 18;
    }
    s += dq[b] * quant::fp16_to_fp32(h) * float(sum);
  }
  return s;
}

}  // namespace

void quantize_query(const float* x, int n, int8_t* q, float* d, int32_t* sum) {
  uint8_t block[34];
  for (int b = 0; b < n / 32; ++b) {
    quant::quantize_row(quant::Type::Q8_0, x + 32 * b, block, 32);
    uint16_t h;
    std::memcpy(&h, block, 2);
    d[b] = quant::fp16_to_fp32(h);
    int32_t s = 0;
    for (int i = 0; i < 32; ++i) {
      q[32 * b + i] = static_cast<int8_t>(block[2 + i]);
      s += q[32 * b + i];
    }
    sum[b] = s;
  }
}

void attention_merge(const float* parts, size_t part_stride, int n, int rows, int dv, float* out) {
  for (int r = 0; r < rows; ++r) {
    float m = -std::numeric_limits<float>::infinity();
    for (int i = 0; i < n; ++i) m = std::max(m, parts[i * part_stride + size_t(r) * (dv + 2) + dv]);
    float* o = out + size_t(r) * dv;
    std::fill_n(o, dv, 0.0f);
    float l = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float* part = parts + i * part_stride + size_t(r) * (dv + 2);
      if (part[dv + 1] == 0.0f) continue;  // a range without visible keys
      const float w = std::exp(part[dv] - m);
      l += w * part[dv + 1];
      for (int d = 0; d < dv; ++d) o[d] += w * part[d];
    }
    const float inv = 1.0f / l;
    for (int d = 0; d < dv; ++d) o[d] *= inv;
  }
}

void CpuBackend::kv_store(const ops::KvLayer& kv, const float* k, const float* v, int n_tokens,
                          int64_t pos0, int64_t k_width, int64_t v_width) {
  if (pos0 < 0 || pos0 + n_tokens > kv.n_ctx)
    fail("the context is full: positions ", pos0, "..", pos0 + n_tokens - 1,
         " do not fit a context of ", kv.n_ctx, " tokens (use a larger --ctx)");
  if (kv.n_heads < 1 || k_width % kv.n_heads != 0 || v_width % kv.n_heads != 0)
    fail("internal error: kv_store of rows of ", k_width, " / ", v_width, " elements in ",
         kv.n_heads, " heads");
  const VecKernels* vk = vec_kernels(isa_);
  const int64_t dk = k_width / kv.n_heads, dv = v_width / kv.n_heads;
  for (int h = 0; h < kv.n_heads; ++h) {
    uint8_t* kh = cache_head(kv.k_type, kv.k, kv.n_ctx, dk, h);
    uint8_t* vh = cache_head(kv.v_type, kv.v, kv.n_ctx, dv, h);
    for (int t = 0; t < n_tokens; ++t) {
      store_row(kv.k_type, kh, pos0 + t, k + t * k_width + h * dk, dk, vk);
      store_row(kv.v_type, vh, pos0 + t, v + t * v_width + h * dv, dv, vk);
    }
  }
}

void CpuBackend::kv_shift(const ops::KvLayer& kv, const ops::KvShiftParams& p) {
  if (p.n <= 0) return;
  if (p.dst < 0 || p.dst >= p.src || p.src + p.n > kv.n_ctx)
    fail("internal error: kv_shift of rows ", p.src, "..", p.src + p.n - 1, " to ", p.dst,
         " in a cache of ", kv.n_ctx, " rows");
  if (kv.n_heads != p.n_kv_heads)
    fail("internal error: kv_shift over ", p.n_kv_heads, " heads of a cache of ", kv.n_heads);
  const VecKernels* vk = vec_kernels(isa_);
  // Each head's keys in chunks of rows, ascending: a row is written below where it is read, after
  // every row that overlaps its destination has been read.
  ops::RopeParams turn = p.rope;
  turn.mscale = 1.0f;
  constexpr int64_t kChunk = 64;
  std::vector<float> buf(size_t(kChunk * p.head_dim));
  for (int h = 0; h < p.n_kv_heads; ++h) {
    uint8_t* kh = cache_head(kv.k_type, kv.k, kv.n_ctx, p.head_dim, h);
    for (int64_t r0 = 0; r0 < p.n; r0 += kChunk) {
      const int64_t n = std::min(kChunk, p.n - r0);
      for (int64_t r = 0; r < n; ++r) {
        float* dst = buf.data() + r * p.head_dim;
        const float* row = cache_row(kv.k_type, kh, p.src + r0 + r, p.head_dim, dst);
        if (row != dst) std::copy_n(row, p.head_dim, dst);
      }
      // Every row turns by the same angle: one "token" at position dst - src.
      rope(buf.data(), 1, int(n), p.head_dim, p.dst - p.src, turn);
      for (int64_t r = 0; r < n; ++r)
        store_row(kv.k_type, kh, p.dst + r0 + r, buf.data() + r * p.head_dim, p.head_dim, vk);
    }
    const size_t v_row = ops::kv_row_bytes(kv.v_type, p.head_dim_v);
    uint8_t* vh = cache_head(kv.v_type, kv.v, kv.n_ctx, p.head_dim_v, h);
    std::memmove(vh + p.dst * v_row, vh + p.src * v_row, size_t(p.n) * v_row);
  }
}

void CpuBackend::attention(const float* q, const ops::KvLayer& kv, float* out,
                           const ops::AttentionParams& p) {
  if (kv.n_heads != p.n_kv_heads)
    fail("internal error: attention over ", p.n_kv_heads, " KV heads in a cache of ", kv.n_heads);
  const VecKernels* vk = vec_kernels(isa_);
  if (vk && p.head_dim % 8 == 0 && p.head_dim_v % 8 == 0) {
    // Items: (KV head, block of query tokens), the blocks with the most keys (the last) first.
    const int group = p.n_heads / p.n_kv_heads;
    const int qb = p.n_tokens == 1 ? 1 : kQueryBlock;
    const int n_blocks = (p.n_tokens + qb - 1) / qb;
    const int64_t items = int64_t(n_blocks) * p.n_kv_heads;
    const int64_t n_keys = p.pos0 + p.n_tokens;
    // Fewer items than twice the threads (decode; a short prompt chunk at depth) over a long
    // context: each item's keys are split into ranges as well, every range leaving its softmax
    // state in `parts`, merged per row afterwards, so that every thread has work.
    const int64_t want = 2 * int64_t(pool_.size());
    const int splits = items >= want
                           ? 1
                           : int(std::max<int64_t>(
                                 1, std::min(n_keys / kMinSplitKeys, (want + items - 1) / items)));
    const int64_t range =
        (n_keys + splits - 1) / splits / kAttnKeyBlock * kAttnKeyBlock + kAttnKeyBlock;
    const size_t need = attention_scratch_floats(p, qb);
    if (splits == 1) {
      pool_.parallel_for(items, 1, [&](int64_t i0, int64_t i1, int thread) {
        float* s = scratch(thread, need);
        for (int64_t i = i0; i < i1; ++i) {
          const int block = n_blocks - 1 - int(i / p.n_kv_heads);
          const int t0 = block * qb, t1 = std::min(p.n_tokens, t0 + qb);
          vk->attention(q, kv, out, p, int(i % p.n_kv_heads), t0, t1, 0, p.pos0 + t1, nullptr, s);
        }
      });
      return;
    }
    const size_t part_stride = size_t(group) * qb * (p.head_dim_v + 2);
    if (attn_parts_.size() < size_t(items) * splits * part_stride)
      attn_parts_.resize(size_t(items) * splits * part_stride);
    float* parts = attn_parts_.data();
    pool_.parallel_for(items * splits, 1, [&](int64_t i0, int64_t i1, int thread) {
      float* s = scratch(thread, need);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t item = i / splits;
        const int split = int(i % splits);
        const int block = n_blocks - 1 - int(item / p.n_kv_heads);
        const int t0 = block * qb, t1 = std::min(p.n_tokens, t0 + qb);
        vk->attention(q, kv, out, p, int(item % p.n_kv_heads), t0, t1, split * range,
                      std::min(n_keys, (split + 1) * range), parts + size_t(i) * part_stride, s);
      }
    });
    // Partial row (t - t0) * group + g of an item is query head kvh * group + g of token t; the
    // group's heads are consecutive in out.
    for (int64_t item = 0; item < items; ++item) {
      const int block = n_blocks - 1 - int(item / p.n_kv_heads), kvh = int(item % p.n_kv_heads);
      const int t0 = block * qb, t1 = std::min(p.n_tokens, t0 + qb);
      for (int t = t0; t < t1; ++t)
        attention_merge(parts + size_t(item) * splits * part_stride +
                            size_t(t - t0) * group * (p.head_dim_v + 2),
                        part_stride, splits, group, p.head_dim_v,
                        out + (int64_t(t) * p.n_heads + int64_t(kvh) * group) * p.head_dim_v);
    }
    return;
  }

  const int group = p.n_heads / p.n_kv_heads;
  const int64_t n_keys_max = p.pos0 + p.n_tokens;
  const int64_t items = int64_t(p.n_tokens) * p.n_heads;
  const bool int_keys = ops::kv_quantized(kv.k_type);
  if (int_keys && p.head_dim % 32 != 0)
    fail("internal error: a ", ops::kv_type_name(kv.k_type), " K cache needs a head size that is a",
         " multiple of 32, not ", p.head_dim);
  const size_t k_row = ops::kv_row_bytes(kv.k_type, p.head_dim);
  pool_.parallel_for(items, 1, [&](int64_t i0, int64_t i1, int thread) {
    // Scratch: scores for every visible key, one converted K head, one converted V head, and the
    // quantized query (levels, scales, sums).
    float* scores = scratch(thread, size_t(n_keys_max + 2 * p.head_dim + p.head_dim_v));
    float* kbuf = scores + n_keys_max;
    float* vbuf = kbuf + p.head_dim;
    float* dq = vbuf + p.head_dim_v;
    auto* sq = reinterpret_cast<int32_t*>(dq + p.head_dim / 32);
    auto* q8 = reinterpret_cast<int8_t*>(sq + p.head_dim / 32);
    for (int64_t item = i0; item < i1; ++item) {
      const int t = int(item / p.n_heads), h = int(item % p.n_heads), kvh = h / group;
      const float* qh = q + (int64_t(t) * p.n_heads + h) * p.head_dim;
      const uint8_t* kh = cache_head(kv.k_type, kv.k, kv.n_ctx, p.head_dim, kvh);
      const uint8_t* vh = cache_head(kv.v_type, kv.v, kv.n_ctx, p.head_dim_v, kvh);
      const int64_t n_keys = p.pos0 + t + 1;  // causal: keys 0..pos0+t
      if (int_keys) quantize_query(qh, p.head_dim, q8, dq, sq);
      float max_s = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n_keys; ++j) {
        if (int_keys) {
          const uint8_t* src = kh + j * k_row;
          scores[j] = quantized_score(kv.k_type, src, p.head_dim, q8, dq) * p.scale;
        } else {
          const float* kj = cache_row(kv.k_type, kh, j, p.head_dim, kbuf);
          scores[j] = dot_f32(qh, kj, p.head_dim) * p.scale;
        }
        max_s = std::max(max_s, scores[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < n_keys; ++j) {
        scores[j] = std::exp(scores[j] - max_s);
        sum += scores[j];
      }
      float* o = out + (int64_t(t) * p.n_heads + h) * p.head_dim_v;
      std::fill_n(o, p.head_dim_v, 0.0f);
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < n_keys; ++j) {
        const float* vj = cache_row(kv.v_type, vh, j, p.head_dim_v, vbuf);
        const float w = scores[j] * inv;
        for (int d = 0; d < p.head_dim_v; ++d) o[d] += w * vj[d];
      }
    }
  });
}

}  // namespace straw::cpu
