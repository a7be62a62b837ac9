// Host-side launchers of every CUDA kernel: plain C++ (no CUDA headers), so that the backend, the
// tests and the benchmarks, all compiled by the C++ compiler, can call them.
//
// Pointers are device pointers unless a comment says otherwise. Every launcher enqueues on
// `stream` (nullptr: the legacy default stream), checks the launch and throws straw::Error on a
// CUDA error or on arguments the kernels do not handle; none synchronizes.
//
// Layouts: activations are float32 row-major [n_tokens][width]; weights are rows of blocks exactly
// as in the GGUF file (row r at w + r * row_bytes, device memory, 16-byte aligned rows for F16 /
// BF16 / F32); 8-bit activations are ActQ8 (quant_decode.h): levels [n_rows][n_in], then scale
// pairs [n_rows][n_in / 32].
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/quant_decode.h"
#include "quant/types.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace straw::cuda {

using Stream = CUstream_st*;

// The position of an op's first token: (*dev if dev else 0) + add. Inside a recorded forward step
// dev points at the step's position in device memory, so a replayed CUDA Graph sees new positions.
struct StepPos {
  const int32_t* dev = nullptr;
  int64_t add = 0;
};

// ---- matrix-vector products (decode: 1..8 tokens) ---------------------------------------------

inline constexpr int kMaxMatvecTokens = 8;

struct MatvecArgs {
  quant::Type type = quant::Type::F32;
  const void* w = nullptr;
  size_t row_bytes = 0;
  int64_t n_in = 0;
  int64_t n_out = 0;
  float* y = nullptr;  // [n_tokens][n_out]
  int n_tokens = 1;    // 1..kMaxMatvecTokens
};

// Bytes of the ActQ8 buffer for n_rows rows of n_in values (levels, then 16-byte aligned scales).
size_t act_q8_bytes(int64_t n_in, int n_rows);
// Quantizes x [n_rows][n_in] (n_in a multiple of 32) into the ActQ8 buffer at `buf`.
void quantize_act_q8(const float* x, int64_t n_in, int n_rows, void* buf, Stream stream);
// The ActQ8 view of a buffer filled by quantize_act_q8.
ActQ8 act_q8_view(const void* buf, int64_t n_in, int n_rows);

// y = W x with int8 dot products against 8-bit activations (formats with is_int8_format()).
void matvec_int8(const MatvecArgs& a, const ActQ8& x, Stream stream);
// y = W x with float dot products, weights dequantized on the fly (every cuda_supports() format;
// the quantized ones are the alternative to matvec_int8 that the benchmarks compare).
void matvec_float(const MatvecArgs& a, const float* x, Stream stream);
// The path matmul takes for 1..8 tokens of format t: true for int8 dot products.
bool matvec_prefers_int8(quant::Type t);

// ---- conversions -------------------------------------------------------------------------------

// out [n_rows][n_in] (binary16) = rows 0..n_rows-1 of w dequantized (n_in a multiple of 8).
void dequantize_f16(quant::Type t, const void* w, size_t row_bytes, int64_t n_in, int64_t n_rows,
                    uint16_t* out, Stream stream);
// y[i] = binary16(x[i]), round to nearest even.
void convert_f32_to_f16(const float* x, uint16_t* y, int64_t n, Stream stream);
// out[t][:] = dequantized row ids[t] of a device-resident table (ids already range-checked).
void get_rows(quant::Type t, const void* table, size_t row_bytes, int64_t n_in, const int32_t* ids,
              int n_ids, float* out, Stream stream);
// dst = src (bytes a multiple of 16, both 16-byte aligned): the reference for bandwidth numbers.
void copy_bytes(void* dst, const void* src, size_t bytes, Stream stream);

// ---- element-wise ------------------------------------------------------------------------------

void rmsnorm(const float* x, const float* w, float* y, int64_t n_rows, int64_t width, float eps,
             Stream stream);

struct RopeArgs {
  float* x = nullptr;  // [n_tokens][n_heads][head_dim], rotated in place
  int n_tokens = 0;
  int n_heads = 0;
  int head_dim = 0;
  StepPos pos;  // position of token 0
  bool neox = false;
  int n_rot = 0;
  float base = 10000.0f;
  float freq_scale = 1.0f;
  const float* freq_factors = nullptr;  // device [n_rot / 2] or null
  float ext_factor = 0.0f;  // YaRN (ops::RopeParams): ramp weight, correction range, attention
  float yarn_low = 0.0f;    // factor
  float yarn_high = 0.0f;
  float mscale = 1.0f;
};
void rope(const RopeArgs& a, Stream stream);

void swiglu(const float* gate, const float* up, float* out, int64_t n, Stream stream);
void add(float* x, const float* y, int64_t n, Stream stream);
void add_bias(float* y, const float* b, int64_t n_rows, int64_t width, Stream stream);

// Writes k [n_tokens][k_width] and v [n_tokens][v_width] into cache rows pos .. pos + n_tokens - 1
// as binary16 (f16) or float32, or as q8_0 / q4_0 blocks (KvQuant; llama.cpp's reference rounding,
// the bytes the CPU's kv_store writes).
enum class KvQuant { None, Q8_0, Q4_0 };  // None: a float cache, binary16 or float32 as f16 says
void kv_store(bool f16, KvQuant k_quant, KvQuant v_quant, void* k_cache, void* v_cache,
              const float* k, const float* v, int n_tokens, StepPos pos, int64_t k_width,
              int64_t v_width, Stream stream);

// ---- linear attention (qwen35): the ops of ops::Backend with the same names -------------------

// dst[r][0..width) = src[r][0..width) (rows src_stride / dst_stride floats apart)
void copy_rows(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t n_rows,
               int64_t width, Stream stream);
// x[i] *= sigmoid(g[i])
void sigmoid_mul(float* x, const float* g, int64_t n, Stream stream);
// x[r] /= max(||x[r]||, eps), rows_per_token rows of `width` per token, tokens token_stride apart
void l2norm(float* x, int n_tokens, int rows_per_token, int64_t width, int64_t token_stride,
            float eps, Stream stream);
// y[r] = x[r] / rms(x[r]) * w * silu(z[r]); y may alias x
void rmsnorm_gated(const float* x, const float* w, const float* z, float* y, int64_t n_rows,
                   int64_t width, float eps, Stream stream);
// alpha = softplus(alpha + dt_bias[h]) * a[h], beta = sigmoid(beta) over [n_tokens][n_heads]
void delta_net_gates(float* alpha, float* beta, const float* dt_bias, const float* a, int n_tokens,
                     int n_heads, Stream stream);

inline constexpr int kMaxConvKernel = 8;  // conv taps the kernel keeps in registers

// ops::ConvParams with device pointers (w: [C][K] taps).
struct ConvArgs {
  int n_tokens = 0;
  int n_channels = 0;
  int kernel = 0;  // 1..kMaxConvKernel
  const float* x = nullptr;
  int64_t x_stride = 0;
  const float* w = nullptr;
  float* state = nullptr;
  float* y = nullptr;
  bool silu = true;
  float* snapshot = nullptr;
  int snapshot_after = -1;
};
void ssm_conv(const ConvArgs& a, Stream stream);

// ops::DeltaNetParams with device pointers. Heads of 32, 64 or 128 keep the state in registers;
// other sizes (up to 6144) run from global memory.
struct DeltaNetArgs {
  int n_tokens = 0;
  int n_k_heads = 0;
  int n_v_heads = 0;
  int head_dim = 0;
  const float* q = nullptr;
  const float* k = nullptr;
  int64_t qk_stride = 0;
  const float* v = nullptr;
  int64_t v_stride = 0;
  const float* g = nullptr;
  const float* beta = nullptr;
  float* state = nullptr;
  float* out = nullptr;
  float scale = 1.0f;
  float* snapshot = nullptr;
  int snapshot_after = -1;
};
void gated_delta_net(const DeltaNetArgs& a, Stream stream);

// ---- mixture of experts (qwen3moe, qwen35moe): the ops of ops::Backend with the same names -----

inline constexpr int kMaxRouteExperts = 2048;  // moe_route's shared memory: 4 warps x 8 KiB
inline constexpr int kMaxMoeExperts = 12288;   // moe_matmul's grouping: 48 KiB of shared memory
inline constexpr int kMaxMoeSlots = 65535;     // moe_matmul's slots per launch (a grid dimension)

// ids / weights [n_tokens][n_used] = the top n_used of softmax(logits[t]) (ties to the lower id),
// renormalised when `normalize` (sum clamped at 2^-14), times `scale` unless 0 or 1.
void moe_route(const float* logits, int n_tokens, int n_expert, int n_used, bool normalize,
               float scale, int32_t* ids, float* weights, Stream stream);
// out[t][:] = sum_k weights[t][k] * y[t][k][:], added in the order k = 0, 1, ...
void moe_combine(const float* y, const float* weights, int n_tokens, int n_used, int64_t width,
                 float* out, Stream stream);
// y[r][:] *= sigmoid(g[r])
void sigmoid_scale_rows(float* y, const float* g, int64_t n_rows, int64_t width, Stream stream);

// The expert matmul y[s][:] = W[ids[s]] x_s over the n_slots = n_tokens * n_used slots, with
// x_s = x[s] (per_slot) or x[s / n_used]. The slots are first grouped by expert on the device
// (moe_group: no host round trip, so a decode step stays one CUDA Graph); then one warp per row of
// an active expert decodes the row once per run of up to 8 of that expert's slots (decode: every
// chosen expert's rows once; a prompt: each expert's rows once per 8 of its tokens). Quantized
// formats multiply 8-bit activations gathered in the grouped order (ActQ8), float formats the
// float rows gathered likewise.
struct MoeMatmulArgs {
  quant::Type type = quant::Type::F32;
  const void* w = nullptr;  // [n_expert][n_out][n_in] blocks, expert_bytes apart
  size_t expert_bytes = 0;
  size_t row_bytes = 0;
  int n_expert = 0;
  int64_t n_in = 0;  // a multiple of 32
  int64_t n_out = 0;
  const float* x = nullptr;  // [n_tokens][n_in], or [n_slots][n_in] when per_slot
  bool per_slot = false;
  const int32_t* ids = nullptr;  // [n_slots], each in 0 .. n_expert - 1
  int n_tokens = 0;
  int n_used = 0;
  float* y = nullptr;  // [n_slots][n_out]
};
// Device workspace moe_matmul needs: the grouping, then the gathered activations.
size_t moe_matmul_workspace_bytes(const MoeMatmulArgs& a);
void moe_matmul(const MoeMatmulArgs& a, void* workspace, Stream stream);

// ---- attention ---------------------------------------------------------------------------------

struct AttnArgs {
  const float* q = nullptr;         // [n_tokens][n_heads][head_dim]
  const void* k = nullptr;          // cache [n_ctx][n_kv_heads][head_dim], binary16 or float32
  const void* v = nullptr;          // cache [n_ctx][n_kv_heads][head_dim_v]
  bool f16 = true;                  // float caches: binary16 (else float32)
  KvQuant k_quant = KvQuant::None;  // quantized caches: rows of q8_0 / q4_0 blocks (flash-decoding
  KvQuant v_quant = KvQuant::None;  // kernel only; heads multiples of 32)
  float* out = nullptr;             // [n_tokens][n_heads][head_dim_v]
  int n_tokens = 0;
  StepPos pos;  // query t sees keys 0 .. pos + t
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int head_dim_v = 0;
  float scale = 1.0f;
  int64_t n_ctx = 0;
};

// Flash-decoding: the keys are split into n_splits ranges (the range length is derived from the
// position on the device, so the launch shape depends only on n_ctx), each range reduced to a
// partial softmax, then the partials combined. Works for any n_tokens and head size <= 512.
int attention_splits(const AttnArgs& a, int sm_count);
size_t attention_partials_bytes(const AttnArgs& a, int n_splits);
void attention_decode(const AttnArgs& a, int n_splits, float* partials, Stream stream);

// Tiled flash attention on tensor cores for prompt batches (head_dim == head_dim_v in {64, 128,
// 256}, float caches); attention_decode serves every other shape and the quantized caches.
bool attention_prefill_supported(const AttnArgs& a);
void attention_prefill(const AttnArgs& a, Stream stream);

}  // namespace straw::cuda
