// The ops an architecture may call, as one interface per backend.
//
// Layering: model (architectures) -> ops (this interface) -> backends (cpu, cuda). The interface
// knows tensors only as typed views (format, shape, pointer): it never sees GGUF or the model.
// Dispatch is virtual at op granularity (a few hundred calls per token), never per element.
//
// Activations are float32, row-major [n_tokens][width], in the backend's memory. Weights are
// 2-D [n_out rows][n_in] in any supported quant format, rows contiguous; a mixture-of-experts
// tensor stacks n_expert such matrices (GGUF ne2), expert_bytes apart.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "quant/types.h"

namespace straw::ops {

// A weight matrix (or vector) in a backend's memory.
struct Weight {
  quant::Type type = quant::Type::F32;
  int64_t n_in = 0;      // ne0: row length (elements), a multiple of the type's block size
  int64_t n_out = 0;     // ne1: number of rows (1 for vectors)
  size_t row_bytes = 0;  // bytes between consecutive rows
  const void* data = nullptr;
  uint32_t layout = 0;  // backend-specific layout tag; 0: rows exactly as stored in the file
  int64_t n_expert = 1;     // ne2: matrices stacked in an expert tensor ([n_expert][n_out][n_in])
  size_t expert_bytes = 0;  // bytes between consecutive matrices (n_out * row_bytes in the file)
  explicit operator bool() const { return data != nullptr; }
};

enum class RopeMode {
  Norm,  // rotate adjacent pairs (x[2i], x[2i+1]): llama GGUFs (q/k permuted by the converter)
  Neox,  // rotate (x[i], x[i + n_rot/2]): qwen2, qwen3
};

// RoPE parameters. theta_i = pos * freq_scale * base^(-2i/n_rot) / freq_factors[i].
struct RopeParams {
  RopeMode mode = RopeMode::Norm;
  int n_rot = 0;            // rotated dims per head (<= head_dim); the rest pass through
  float base = 10000.0f;    // rope.freq_base
  float freq_scale = 1.0f;  // 1 / rope.scaling.factor for linear scaling
  const float* freq_factors = nullptr;  // [n_rot/2] (Llama 3.1 rope_freqs.weight) or null
};

// Attention over a KV cache layer. Cache rows hold post-RoPE keys and values for positions
// 0..n_ctx-1; row p of K is [n_kv_heads][head_dim] (values: [n_kv_heads][head_dim_v]).
// Q8_0: each row is a sequence of Q8_0 blocks (fp16 scale + 32 int8, 34 bytes); head sizes must be
// multiples of 32 so that every head starts a block.
enum class KvType { F32, F16, Q8_0 };

// Bytes of one cache row of `width` elements (a multiple of 32 for Q8_0); also the byte offset of
// element `width` inside a row.
inline size_t kv_row_bytes(KvType t, int64_t width) {
  switch (t) {
    case KvType::F32:
      return size_t(width) * 4;
    case KvType::F16:
      return size_t(width) * 2;
    case KvType::Q8_0:
      return size_t(width) / 32 * 34;
  }
  return 0;
}

inline const char* kv_type_name(KvType t) {
  return t == KvType::F32 ? "f32" : t == KvType::F16 ? "f16" : "q8_0";
}

struct KvLayer {
  KvType type = KvType::F16;
  void* k = nullptr;  // [n_ctx] rows of kv_row_bytes(type, n_kv_heads * head_dim)
  void* v = nullptr;  // [n_ctx] rows of kv_row_bytes(type, n_kv_heads * head_dim_v)
  int64_t n_ctx = 0;
};

struct AttentionParams {
  int n_tokens = 0;  // query rows in this batch, at positions pos0 .. pos0 + n_tokens - 1
  int64_t pos0 = 0;  // position of the first query; keys 0..pos0+t are visible to query t
  int n_heads = 0;   // query heads; head h reads KV head h / (n_heads / n_kv_heads)
  int n_kv_heads = 0;
  int head_dim = 0;    // of q and k
  int head_dim_v = 0;  // of v and the output
  float scale = 1.0f;  // applied to q.k, usually 1/sqrt(head_dim)
};

// Memory owned by a backend: host RAM for the CPU, device memory for a GPU. Freed on destruction.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual void* data() = 0;
  virtual size_t size() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Zero-initialised memory for activations and KV caches, in the backend's memory.
  virtual std::unique_ptr<Buffer> alloc(size_t bytes) = 0;
  // Copies bytes from backend memory to host memory, after all queued ops are done.
  virtual void to_host(const void* src, void* dst, size_t bytes) = 0;
  // Copies bytes from host memory into backend memory (queued after earlier ops).
  virtual void from_host(const void* src, void* dst, size_t bytes) = 0;

  // Bracket one forward step (embeddings .. first LM-head rows). A backend may record the ops of a
  // step and replay the recording for later steps of the same shape (n tokens, n_logit_rows),
  // e.g. as a CUDA Graph: begin_forward returns true when it will replay, and the caller then
  // issues no ops until end_forward. A replaying backend takes token ids and positions from these
  // arguments (kept in its own memory), not from the recorded ops' arguments.
  virtual bool begin_forward(std::span<const int32_t> tokens, int64_t pos0, int n_logit_rows) {
    (void)tokens, (void)pos0, (void)n_logit_rows;
    return false;
  }
  virtual void end_forward() {}

  // Makes a weight matrix ready for matmul on this backend, called once per weight at load time:
  // the returned view may point to a repacked copy (CPU) or device memory (GPU) owned by the
  // backend for its lifetime. The default uses the weight in place.
  virtual Weight prepare_weight(const Weight& w) { return w; }

  // out[t][:] = dequantized row tokens[t] of `table` (embedding lookup).
  virtual void get_rows(const Weight& table, std::span<const int32_t> tokens, float* out) = 0;

  // y[t][o] = sum_i w[o][i] * x[t][i]   (x: [n_tokens][n_in], y: [n_tokens][n_out])
  virtual void matmul(const Weight& w, const float* x, float* y, int n_tokens) = 0;

  // y[r][i] += b[i] for r < n_rows   (b: an F32 vector of `width` elements)
  virtual void add_bias(float* y, const Weight& b, int64_t n_rows, int64_t width) = 0;

  // y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w   per row of `width`; y may alias x.
  virtual void rmsnorm(const float* x, const Weight& w, float* y, int64_t n_rows, int64_t width,
                       float eps) = 0;

  // Rotates each head of x in place: x is [n_tokens][n_heads][head_dim], token t at pos0 + t.
  virtual void rope(float* x, int n_tokens, int n_heads, int head_dim, int64_t pos0,
                    const RopeParams& p) = 0;

  // Writes k, v ([n_tokens][n_kv_heads*head_dim(_v)]) into cache rows pos0..pos0+n_tokens-1.
  virtual void kv_store(const KvLayer& kv, const float* k, const float* v, int n_tokens,
                        int64_t pos0, int64_t k_width, int64_t v_width) = 0;

  // out[t][h] = softmax(q[t][h] . K[0..pos0+t] * scale) V   (causal); out:
  // [n_tokens][n_heads*head_dim_v]
  virtual void attention(const float* q, const KvLayer& kv, float* out,
                         const AttentionParams& p) = 0;

  // out[i] = silu(gate[i]) * up[i]   (SwiGLU); out may alias gate or up
  virtual void swiglu(const float* gate, const float* up, float* out, int64_t n) = 0;

  // x[i] += y[i]   (residual connection)
  virtual void add(float* x, const float* y, int64_t n) = 0;

  // Mixture-of-experts ops (src/ops/backend_moe.cpp has the defaults, which throw: a backend
  // without them never gets an MoE FFN from the placement).

  // Routing as llama.cpp's build_moe_ffn with softmax gating, per token t of logits
  // [n_tokens][n_expert]: p = softmax(logits[t]); ids[t] = the n_used experts of highest p, best
  // first (ties to the lower id); weights[t][k] = p[ids[t][k]], divided by their sum when
  // `normalize` (the sum clamped below at 2^-14 as llama.cpp does), times `scale` unless it is 0.
  // ids, weights: [n_tokens][n_used].
  virtual void moe_route(const float* logits, int n_tokens, int n_expert, int n_used,
                         bool normalize, float scale, int32_t* ids, float* weights);
  // Expert matmul over the slots (t, k) of n_tokens x n_used routed tokens:
  //   y[t][k][:] = w[ids[t][k]] · x_tk,  x_tk = x[t] ([n_tokens][n_in]) when !x_per_slot,
  //                                      x[t][k] ([n_tokens][n_used][n_in]) when x_per_slot
  // w: an expert tensor (n_expert > 1 matrices of [n_out][n_in]); y: [n_tokens][n_used][n_out].
  // Only the selected experts' rows are read.
  virtual void moe_matmul(const Weight& w, const float* x, bool x_per_slot, const int32_t* ids,
                          int n_tokens, int n_used, float* y);
  // out[t][:] = sum_k weights[t][k] * y[t][k][:]   (y: [n_tokens][n_used][width]; weights:
  // [n_tokens][n_used]; out: [n_tokens][width])
  virtual void moe_combine(const float* y, const float* weights, int n_tokens, int n_used,
                           int64_t width, float* out);
};

}  // namespace straw::ops
