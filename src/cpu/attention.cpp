// CPU attention over the KV cache and the KV store: the SIMD kernel (attention_avx2.cpp) when the
// head sizes allow, else the reference: causal softmax(q K^T * scale) V with grouped-query heads,
// one (token, head) pair per work item.
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

// Elements [offset, offset + n) of cache row p (row length `width`, element type t) as floats; F16,
// Q8_0 and Q4_0 caches are converted into `tmp` (for the quantized types, offset and n are
// multiples of 32: whole blocks).
const float* cache_slice(ops::KvType t, const void* base, int64_t p, int64_t width, int64_t offset,
                         int64_t n, float* tmp) {
  const uint8_t* row = static_cast<const uint8_t*>(base) + p * ops::kv_row_bytes(t, width);
  const uint8_t* src = row + ops::kv_row_bytes(t, offset);
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

// Stores `width` floats as cache row p of type t. Quantized rows use llama.cpp's reference rounding
// (quantize_row_q8_0_ref / quantize_row_q4_0_ref), so that a cache holds what llama.cpp's would.
void store_row(ops::KvType t, void* base, int64_t p, const float* x, int64_t width,
               const VecKernels* vk) {
  uint8_t* dst = static_cast<uint8_t*>(base) + p * ops::kv_row_bytes(t, width);
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

// Decode splits the keys of each KV head into ranges of at least this many keys (multiples of the
// kernel's key block), so that every thread has work even when there are fewer KV heads than
// threads, and merges the ranges' softmax states afterwards.
constexpr int64_t kMinSplitKeys = 4 * kAttnKeyBlock;

}  // namespace

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
  const VecKernels* vk = vec_kernels(isa_);
  for (int t = 0; t < n_tokens; ++t) {
    store_row(kv.k_type, kv.k, pos0 + t, k + t * k_width, k_width, vk);
    store_row(kv.v_type, kv.v, pos0 + t, v + t * v_width, v_width, vk);
  }
}

void CpuBackend::kv_shift(const ops::KvLayer& kv, const ops::KvShiftParams& p) {
  if (p.n <= 0) return;
  if (p.dst < 0 || p.dst >= p.src || p.src + p.n > kv.n_ctx)
    fail("internal error: kv_shift of rows ", p.src, "..", p.src + p.n - 1, " to ", p.dst,
         " in a cache of ", kv.n_ctx, " rows");
  const int64_t k_width = int64_t(p.n_kv_heads) * p.head_dim;
  const int64_t v_width = int64_t(p.n_kv_heads) * p.head_dim_v;
  const VecKernels* vk = vec_kernels(isa_);
  // Keys in chunks of rows, ascending: a row is written below where it is read, after every row
  // that overlaps its destination has been read.
  ops::RopeParams turn = p.rope;
  turn.mscale = 1.0f;
  constexpr int64_t kChunk = 64;
  std::vector<float> buf(size_t(kChunk * k_width));
  for (int64_t r0 = 0; r0 < p.n; r0 += kChunk) {
    const int64_t n = std::min(kChunk, p.n - r0);
    for (int64_t r = 0; r < n; ++r) {
      const float* row = cache_slice(kv.k_type, kv.k, p.src + r0 + r, k_width, 0, k_width,
                                     buf.data() + r * k_width);
      if (row != buf.data() + r * k_width) std::copy_n(row, k_width, buf.data() + r * k_width);
    }
    // Every head of every row turns by the same angle: one "token" at position dst - src.
    rope(buf.data(), 1, int(n * p.n_kv_heads), p.head_dim, p.dst - p.src, turn);
    for (int64_t r = 0; r < n; ++r)
      store_row(kv.k_type, kv.k, p.dst + r0 + r, buf.data() + r * k_width, k_width, vk);
  }
  const size_t v_row = ops::kv_row_bytes(kv.v_type, v_width);
  auto* v = static_cast<uint8_t*>(kv.v);
  std::memmove(v + p.dst * v_row, v + p.src * v_row, size_t(p.n) * v_row);
}

void CpuBackend::attention(const float* q, const ops::KvLayer& kv, float* out,
                           const ops::AttentionParams& p) {
  const VecKernels* vk = vec_kernels(isa_);
  const int64_t n_keys = p.pos0 + p.n_tokens;
  const int splits =
      p.n_tokens == 1 ? int(std::min<int64_t>(n_keys / kMinSplitKeys,
                                              (2 * pool_.size() + p.n_kv_heads - 1) / p.n_kv_heads))
                      : 1;
  if (vk && p.head_dim % 8 == 0 && p.head_dim_v % 8 == 0 && splits > 1) {
    // Decode over a long context: items (KV head, key range), each leaving its softmax state in
    // `parts`, merged per head afterwards.
    const int group = p.n_heads / p.n_kv_heads;
    const int64_t range =
        (n_keys + splits - 1) / splits / kAttnKeyBlock * kAttnKeyBlock + kAttnKeyBlock;
    const size_t part_stride = size_t(group) * (p.head_dim_v + 2);
    const size_t need = attention_scratch_floats(p, 1);
    if (attn_parts_.size() < size_t(splits) * p.n_kv_heads * part_stride)
      attn_parts_.resize(size_t(splits) * p.n_kv_heads * part_stride);
    float* parts = attn_parts_.data();
    pool_.parallel_for(int64_t(splits) * p.n_kv_heads, 1, [&](int64_t i0, int64_t i1, int thread) {
      float* s = scratch(thread, need);
      for (int64_t i = i0; i < i1; ++i) {
        const int kvh = int(i / splits), split = int(i % splits);
        vk->attention(q, kv, out, p, kvh, 0, 1, split * range,
                      std::min(n_keys, (split + 1) * range), parts + size_t(i) * part_stride, s);
      }
    });
    // The query heads of KV head kvh are consecutive rows of out (one token).
    for (int kvh = 0; kvh < p.n_kv_heads; ++kvh)
      attention_merge(parts + size_t(kvh) * splits * part_stride, part_stride, splits, group,
                      p.head_dim_v, out + int64_t(kvh) * group * p.head_dim_v);
    return;
  }
  if (vk && p.head_dim % 8 == 0 && p.head_dim_v % 8 == 0) {
    // Items: (KV head, block of query tokens), the blocks with the most keys (the last) first.
    const int qb = p.n_tokens == 1 ? 1 : kQueryBlock;
    const int n_blocks = (p.n_tokens + qb - 1) / qb;
    const int64_t items = int64_t(n_blocks) * p.n_kv_heads;
    const size_t need = attention_scratch_floats(p, qb);
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

  const int group = p.n_heads / p.n_kv_heads;
  const int64_t k_width = int64_t(p.n_kv_heads) * p.head_dim;
  const int64_t v_width = int64_t(p.n_kv_heads) * p.head_dim_v;
  const int64_t n_keys_max = p.pos0 + p.n_tokens;
  const int64_t items = int64_t(p.n_tokens) * p.n_heads;
  pool_.parallel_for(items, 1, [&](int64_t i0, int64_t i1, int thread) {
    // Scratch: scores for every visible key, one converted K head, one converted V head.
    float* scores = scratch(thread, size_t(n_keys_max + p.head_dim + p.head_dim_v));
    float* kbuf = scores + n_keys_max;
    float* vbuf = kbuf + p.head_dim;
    for (int64_t item = i0; item < i1; ++item) {
      const int t = int(item / p.n_heads), h = int(item % p.n_heads), kvh = h / group;
      const float* qh = q + (int64_t(t) * p.n_heads + h) * p.head_dim;
      const int64_t n_keys = p.pos0 + t + 1;  // causal: keys 0..pos0+t
      float max_s = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n_keys; ++j) {
        const float* kj =
            cache_slice(kv.k_type, kv.k, j, k_width, int64_t(kvh) * p.head_dim, p.head_dim, kbuf);
        scores[j] = dot_f32(qh, kj, p.head_dim) * p.scale;
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
        const float* vj = cache_slice(kv.v_type, kv.v, j, v_width, int64_t(kvh) * p.head_dim_v,
                                      p.head_dim_v, vbuf);
        const float w = scores[j] * inv;
        for (int d = 0; d < p.head_dim_v; ++d) o[d] += w * vj[d];
      }
    }
  });
}

}  // namespace straw::cpu
