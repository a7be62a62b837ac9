// CPU attention over the KV cache and the KV store: the SIMD kernel (attention_avx2.cpp) when the
// head sizes allow, else the reference: causal softmax(q K^T * scale) V with grouped-query heads,
// one (token, head) pair per work item.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/cpu_backend.h"
#include "quant/f16.h"
#include "util/str.h"

namespace straw::cpu {

namespace {

// Elements [offset, offset + n) of cache row p (row length `width`) as floats; F16 caches are
// converted into `tmp`.
const float* cache_slice(const ops::KvLayer& kv, const void* base, int64_t p, int64_t width,
                         int64_t offset, int64_t n, float* tmp) {
  if (kv.type == ops::KvType::F32) return static_cast<const float*>(base) + p * width + offset;
  const uint16_t* src = static_cast<const uint16_t*>(base) + p * width + offset;
  for (int64_t i = 0; i < n; ++i) tmp[i] = quant::fp16_to_fp32(src[i]);
  return tmp;
}

// Query tokens per work item of the SIMD kernel when a batch has many (prefill).
constexpr int kQueryBlock = 16;

}  // namespace

void CpuBackend::kv_store(const ops::KvLayer& kv, const float* k, const float* v, int n_tokens,
                          int64_t pos0, int64_t k_width, int64_t v_width) {
  if (pos0 < 0 || pos0 + n_tokens > kv.n_ctx)
    fail("the context is full: positions ", pos0, "..", pos0 + n_tokens - 1,
         " do not fit a context of ", kv.n_ctx, " tokens (use a larger --ctx)");
  const VecKernels* vk = vec_kernels(isa_);
  for (int t = 0; t < n_tokens; ++t) {
    const int64_t p = pos0 + t;
    if (kv.type == ops::KvType::F32) {
      std::copy_n(k + t * k_width, k_width, static_cast<float*>(kv.k) + p * k_width);
      std::copy_n(v + t * v_width, v_width, static_cast<float*>(kv.v) + p * v_width);
    } else if (vk) {
      vk->f32_to_f16(k + t * k_width, static_cast<uint16_t*>(kv.k) + p * k_width, k_width);
      vk->f32_to_f16(v + t * v_width, static_cast<uint16_t*>(kv.v) + p * v_width, v_width);
    } else {
      uint16_t* kd = static_cast<uint16_t*>(kv.k) + p * k_width;
      uint16_t* vd = static_cast<uint16_t*>(kv.v) + p * v_width;
      for (int64_t i = 0; i < k_width; ++i) kd[i] = quant::fp32_to_fp16(k[t * k_width + i]);
      for (int64_t i = 0; i < v_width; ++i) vd[i] = quant::fp32_to_fp16(v[t * v_width + i]);
    }
  }
}

void CpuBackend::attention(const float* q, const ops::KvLayer& kv, float* out,
                           const ops::AttentionParams& p) {
  const VecKernels* vk = vec_kernels(isa_);
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
        vk->attention(q, kv, out, p, int(i % p.n_kv_heads), t0, t1, s);
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
            cache_slice(kv, kv.k, j, k_width, int64_t(kvh) * p.head_dim, p.head_dim, kbuf);
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
        const float* vj =
            cache_slice(kv, kv.v, j, v_width, int64_t(kvh) * p.head_dim_v, p.head_dim_v, vbuf);
        const float w = scores[j] * inv;
        for (int d = 0; d < p.head_dim_v; ++d) o[d] += w * vj[d];
      }
    }
  });
}

}  // namespace straw::cpu
