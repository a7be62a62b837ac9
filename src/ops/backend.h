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

#include "ops/kv_type.h"
#include "quant/types.h"

namespace straw::ops {

// A weight matrix (or vector) in a backend's memory.
struct Weight {
  quant::Type type = quant::Type::F32;
  int64_t n_in = 0;      // ne0: row length (elements), a multiple of the type's block size
  int64_t n_out = 0;     // ne1: number of rows (1 for vectors)
  size_t row_bytes = 0;  // bytes between consecutive rows
  const void* data = nullptr;
  uint32_t layout = 0;      // backend-specific layout tag; 0: rows exactly as stored in the file
  int64_t n_expert = 1;     // ne2: matrices stacked in an expert tensor ([n_expert][n_out][n_in])
  size_t expert_bytes = 0;  // bytes between consecutive matrices (n_out * row_bytes in the file)
  explicit operator bool() const { return data != nullptr; }
};

// One product of Backend::matmul_many: y = W x   (y: [n_tokens][w->n_out]).
struct MatmulJob {
  const Weight* w = nullptr;
  float* y = nullptr;
};

enum class RopeMode {
  Norm,  // rotate adjacent pairs (x[2i], x[2i+1]): llama GGUFs (q/k permuted by the converter)
  Neox,  // rotate (x[i], x[i + n_rot/2]): qwen2, qwen3
};

// RoPE parameters. Pair i (0 <= i < n_rot/2) of a head at position pos turns by
//   theta_i = pos * f_i,   f_i = base^(-2i/n_rot) / freq_factors[i] * (s * (1 - r_i) + r_i)
// with s = freq_scale and r_i = ext_factor * ramp_i, the YaRN ramp
//   ramp_i = 1 - clamp((i - yarn_low) / max(0.001, yarn_high - yarn_low), 0, 1)
// (1 for the fast pairs below yarn_low: extrapolated; 0 above yarn_high: interpolated by s), and
// the rotated pair is scaled by mscale (YaRN's attention factor). Without YaRN (ext_factor 0,
// mscale 1) this is plain RoPE with linear scaling s.
struct RopeParams {
  RopeMode mode = RopeMode::Norm;
  int n_rot = 0;            // rotated dims per head (<= head_dim); the rest pass through
  float base = 10000.0f;    // rope.freq_base
  float freq_scale = 1.0f;  // 1 / rope.scaling.factor for linear and YaRN scaling
  const float* freq_factors = nullptr;  // [n_rot/2] (Llama 3.1 rope_freqs.weight) or null
  float ext_factor = 0.0f;  // YaRN: 1 (0: no ramp, every pair interpolated by freq_scale)
  float yarn_low = 0.0f;    // YaRN correction range, in pairs (llama.cpp's corr_dims)
  float yarn_high = 0.0f;
  float mscale = 1.0f;  // multiplies cos and sin: YaRN's attention factor

  bool yarn() const { return ext_factor != 0.0f || mscale != 1.0f; }
};

// Attention over a KV cache layer. The cache holds post-RoPE keys and values for positions
// 0..n_ctx-1 and n_heads KV heads: one row of kv_row_bytes(k_type, head_dim) per (head, position)
// in K, of kv_row_bytes(v_type, head_dim_v) in V (K and V have a type each: llama.cpp's -ctk /
// -ctv; row layouts in ops/kv_type.h). The order of the rows is the backend's, written by its
// kv_store and read by its attention: the CPU keeps each head's rows together ([n_heads][n_ctx],
// one contiguous stream per head), CUDA each position's heads ([n_ctx][n_heads]). A cache is
// used by one backend only.
struct KvLayer {
  KvType k_type = KvType::F16;
  KvType v_type = KvType::F16;
  void* k = nullptr;  // n_ctx * kv_row_bytes(k_type, n_heads * head_dim) bytes
  void* v = nullptr;  // n_ctx * kv_row_bytes(v_type, n_heads * head_dim_v) bytes
  int64_t n_ctx = 0;
  int n_heads = 0;  // KV heads
};

// Context shift: cache rows [src, src + n) move to [dst, dst + n) (dst < src), keys turned by the
// position change dst - src. RoPE turns pair i by pos * f_i, so a key rotated for position p
// becomes the key of position p + (dst - src) by a further rotation of (dst - src) * f_i; the
// attention factor (RopeParams::mscale) is already in the key and is not applied again. A
// quantized K row is converted to floats, turned and quantized again; V rows move as they are.
struct KvShiftParams {
  int64_t dst = 0;  // first row written
  int64_t src = 0;  // first row moved (> dst)
  int64_t n = 0;    // rows moved
  int n_kv_heads = 0;
  int head_dim = 0;    // of k
  int head_dim_v = 0;  // of v
  RopeParams rope;     // the layer's RoPE (frequency factors included)
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

// Causal depthwise convolution over time with a carried state (the "conv1d" of Mamba-style and
// Gated DeltaNet layers), one sequence:
//   y[t][c] = act( sum_{i<K} w[c][i] * x[t-K+1+i][c] ),  act = SiLU or identity,
// where the positions before the first token (t-K+1+i < 0) come from the state.
struct ConvParams {
  int n_tokens = 0;
  int n_channels = 0;        // C
  int kernel = 0;            // K taps; the state holds the K-1 positions before the batch
  const float* x = nullptr;  // [n_tokens] rows, x_stride floats apart; channel c at column c
  int64_t x_stride = 0;      // >= n_channels
  const float* w = nullptr;  // [C][K] taps per channel, the oldest position first; weights: a
                             // backend may keep a converted copy (found by address), so the taps
                             // at an address must not change while the backend lives
  float* state = nullptr;    // [K-1][C] inputs of the K-1 positions before token 0, oldest first;
                             // on return, those before the next batch
  float* y = nullptr;        // [n_tokens][C]; must not overlap x or state
  bool silu = true;
  // Optional: the state as it is after token snapshot_after (0 <= snapshot_after < n_tokens),
  // written to snapshot ([K-1][C]); lets a caller keep a checkpoint inside a batch.
  float* snapshot = nullptr;
  int snapshot_after = -1;
};

// The gated delta rule (Gated DeltaNet linear attention), one sequence. Per value head h, with
// its query/key head kh = h % n_k_heads (GGUF order: value heads tiled over the key heads), state
// S_h (S x S, S[i][j]: key dimension i, value dimension j) and each token t in order:
//   S_h = exp(g[t][h]) * S_h                           decay
//   d   = beta[t][h] * (v_t,h - S_h^T k_t,kh)          delta (j)
//   S_h = S_h + k_t,kh d^T                             rank-1 update
//   out[t][h] = scale * S_h^T q_t,kh                   readout (j)
// q and k are expected L2-normalized. A backend may compute a batch in a chunked parallel form;
// the result equals the token loop up to float rounding.
struct DeltaNetParams {
  int n_tokens = 0;
  int n_k_heads = 0;         // query / key heads
  int n_v_heads = 0;         // value heads, a multiple of n_k_heads
  int head_dim = 0;          // S: size of every q, k and v head
  const float* q = nullptr;  // token t, key head kh at q + t * qk_stride + kh * S
  const float* k = nullptr;  // same layout as q
  int64_t qk_stride = 0;
  const float* v = nullptr;  // token t, value head h at v + t * v_stride + h * S
  int64_t v_stride = 0;
  const float* g = nullptr;     // [n_tokens][n_v_heads] log of the decay (<= 0)
  const float* beta = nullptr;  // [n_tokens][n_v_heads] update strength in (0, 1)
  float* state = nullptr;       // [n_v_heads][S (i)][S (j)] = S_h[i][j], F32, updated in place
  float* out = nullptr;         // [n_tokens][n_v_heads][S]
  float scale = 1.0f;           // readout scale, usually 1/sqrt(S)
  // Optional: the state as it is after token snapshot_after (0 <= snapshot_after < n_tokens),
  // written to snapshot (layout of state).
  float* snapshot = nullptr;
  int snapshot_after = -1;
};

// Memory owned by a backend: host RAM for the CPU, device memory for a GPU. Freed on destruction.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual void* data() = 0;
  virtual size_t size() const = 0;
};

// A new op must also be forwarded by ops::ProfiledBackend (ops/profile.h), or profiling a model
// that uses it would reach the throwing default.
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

  // y_j = W_j x for every job: products of one input (q / k / v, gate / up), the same x, n_in and
  // n_tokens, the outputs apart. A backend may run them as one step (the CPU: one parallel region
  // and one quantization of x per activation format); the default calls matmul for each.
  virtual void matmul_many(std::span<const MatmulJob> jobs, const float* x, int n_tokens) {
    for (const MatmulJob& j : jobs) matmul(*j.w, x, j.y, n_tokens);
  }

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
  // Moves cache rows down and turns their keys (KvShiftParams). Optional: the default refuses
  // (context shift runs on the CPU only so far).
  virtual void kv_shift(const KvLayer& kv, const KvShiftParams& p);

  virtual void swiglu(const float* gate, const float* up, float* out, int64_t n) = 0;

  // x[i] += y[i]   (residual connection)
  virtual void add(float* x, const float* y, int64_t n) = 0;

  // Ops of linear-attention (Gated DeltaNet) and gated-attention layers (qwen35). A backend without
  // them keeps the default, which throws: the placement never gives such layers to it.

  // dst[r][0..width) = src[r][0..width) for n_rows rows (src_stride / dst_stride floats apart)
  virtual void copy_rows(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                         int64_t n_rows, int64_t width);
  // x[i] *= sigmoid(g[i])   (output gate)
  virtual void sigmoid_mul(float* x, const float* g, int64_t n);
  // y[r][:] *= sigmoid(g[r]) for n_rows rows of `width` floats (a per-token gate, qwen35moe's
  // shared expert)
  virtual void sigmoid_scale_rows(float* y, const float* g, int64_t n_rows, int64_t width);
  // x[r] /= max(||x[r]||_2, eps) for rows of `width` floats: n_tokens groups of rows_per_token
  // consecutive rows, the groups token_stride floats apart
  virtual void l2norm(float* x, int n_tokens, int rows_per_token, int64_t width,
                      int64_t token_stride, float eps);
  // y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w * silu(z[r])   per row of `width` (w: [width] F32;
  // z: [n_rows][width]); y may alias x
  virtual void rmsnorm_gated(const float* x, const Weight& w, const float* z, float* y,
                             int64_t n_rows, int64_t width, float eps);
  // In place, for [n_tokens][n_heads] arrays: alpha becomes the log decay
  //   g = softplus(alpha + dt_bias[h]) * a[h]   (a = -exp(A_log) < 0)
  // and beta becomes sigmoid(beta). dt_bias, a: F32 vectors of n_heads.
  virtual void delta_net_gates(float* alpha, float* beta, const Weight& dt_bias, const Weight& a,
                               int n_tokens, int n_heads);
  virtual void ssm_conv(const ConvParams& p);
  virtual void gated_delta_net(const DeltaNetParams& p);
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
