// Turns op records into kernel launches on the backend's stream: matvec or cuBLAS GEMM per batch
// size, the element-wise kernels, flash-decoding or tiled attention, the expert matmul.
#include <algorithm>

#include "cuda/backend_impl.h"
#include "util/str.h"

namespace straw::cuda {

namespace {

template <class... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

// Whether an output range may overwrite a cached activation input.
bool overlaps(const void* a, size_t a_bytes, const float* x, int64_t n_in, int n_tokens) {
  if (!x) return false;
  const auto pa = reinterpret_cast<uintptr_t>(a), px = reinterpret_cast<uintptr_t>(x);
  const size_t x_bytes = size_t(n_in) * size_t(n_tokens) * sizeof(float);
  return pa < px + x_bytes && px < pa + a_bytes;
}

AttnArgs attn_args(const AttentionRec& r) {
  AttnArgs a;
  a.q = r.q, a.k = r.k, a.v = r.v, a.f16 = r.f16, a.out = r.out;
  a.k_quant = r.k_quant, a.v_quant = r.v_quant;
  a.n_tokens = r.n_tokens;
  a.pos = {r.pos_dev, r.pos_add};
  a.n_heads = r.n_heads, a.n_kv_heads = r.n_kv_heads;
  a.head_dim = r.head_dim, a.head_dim_v = r.head_dim_v;
  a.scale = r.scale;
  a.n_ctx = r.n_ctx;
  return a;
}

}  // namespace

// Prompt batches: y = x W^T with W dequantized to binary16 in tiles of rows (F16 weights are used
// as they are, F32 weights with an FP32 SGEMM), x converted to binary16 once per input, float32
// accumulation and output. Column-major view: C (n_out x T, ld n_out) = W^T' (n_out x n_in) *
// X (n_in x T), with W stored row-major [n_out][n_in] = column-major (n_in x n_out).
void CudaBackend::Impl::gemm(const MatmulRec& m) {
  const int T = m.n_tokens;
  const int n_in = int(m.n_in), n_out = int(m.n_out);
  const float one = 1.0f, zero = 0.0f;
  if (m.type == quant::Type::F32) {
    STRAW_CUBLAS_CHECK(cublasSgemm(cublas, CUBLAS_OP_T, CUBLAS_OP_N, n_out, T, n_in, &one,
                                   static_cast<const float*>(m.w), int(m.row_bytes / 4), m.x, n_in,
                                   &zero, m.y, n_out));
    return;
  }
  if (!(f16_of.x == m.x && f16_of.n_in == m.n_in && f16_of.n_tokens == T)) {
    convert_f32_to_f16(m.x, static_cast<uint16_t*>(act_f16.ptr), int64_t(T) * m.n_in, stream);
    f16_of = {m.x, m.n_in, T};
  }
  if (m.type == quant::Type::F16) {
    STRAW_CUBLAS_CHECK(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, n_out, T, n_in, &one, m.w,
                                    CUDA_R_16F, int(m.row_bytes / 2), act_f16.ptr, CUDA_R_16F, n_in,
                                    &zero, m.y, CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
    return;
  }
  int64_t rows = int64_t(tile_f16.bytes / (size_t(m.n_in) * 2));
  if (rows < m.n_out) rows = std::max<int64_t>(16, rows / 64 * 64);
  if (rows * m.n_in * 2 > int64_t(tile_f16.bytes))
    fail("internal error: binary16 tile of ", tile_f16.bytes, " bytes for rows of ", m.n_in);
  const auto* w = static_cast<const uint8_t*>(m.w);
  for (int64_t r0 = 0; r0 < m.n_out; r0 += rows) {
    const int n = int(std::min(rows, m.n_out - r0));
    dequantize_f16(m.type, w + r0 * m.row_bytes, m.row_bytes, m.n_in, n,
                   static_cast<uint16_t*>(tile_f16.ptr), stream);
    STRAW_CUBLAS_CHECK(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, n, T, n_in, &one,
                                    tile_f16.ptr, CUDA_R_16F, n_in, act_f16.ptr, CUDA_R_16F, n_in,
                                    &zero, m.y + r0, CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
  }
}

void CudaBackend::Impl::issue(const OpRec& r) {
  std::visit(
      Overloaded{
          [&](const GetRowsDeviceRec& g) {
            invalidate_caches();
            cuda::get_rows(g.type, g.table, g.row_bytes, g.n_in, g.ids, g.n, g.out, stream);
          },
          [&](const CopyInRec& c) {
            invalidate_caches();
            STRAW_CUDA_CHECK(
                cudaMemcpyAsync(c.dst, c.pinned, c.bytes, cudaMemcpyHostToDevice, stream));
            if (mode != Mode::Capture) STRAW_CUDA_CHECK(cudaEventRecord(rows_consumed, stream));
          },
          [&](const MatmulRec& m) {
            const size_t y_bytes = size_t(m.n_tokens) * m.n_out * sizeof(float);
            if (overlaps(m.y, y_bytes, q8_of.x, q8_of.n_in, q8_of.n_tokens)) q8_of = {};
            if (overlaps(m.y, y_bytes, f16_of.x, f16_of.n_in, f16_of.n_tokens)) f16_of = {};
            if (matmul_uses_gemm(m.type, m.n_in, m.n_tokens)) return gemm(m);
            MatvecArgs a;
            a.type = m.type, a.w = m.w, a.row_bytes = m.row_bytes;
            a.n_in = m.n_in, a.n_out = m.n_out, a.y = m.y, a.n_tokens = m.n_tokens;
            if (!matvec_prefers_int8(m.type)) return matvec_float(a, m.x, stream);
            if (!(q8_of.x == m.x && q8_of.n_in == m.n_in && q8_of.n_tokens == m.n_tokens)) {
              quantize_act_q8(m.x, m.n_in, m.n_tokens, act_q8.ptr, stream);
              q8_of = {m.x, m.n_in, m.n_tokens};
            }
            matvec_int8(a, act_q8_view(act_q8.ptr, m.n_in, m.n_tokens), stream);
          },
          [&](const BiasRec& b) {
            invalidate_caches();
            cuda::add_bias(b.y, b.b, b.n_rows, b.width, stream);
          },
          [&](const RmsnormRec& n) {
            invalidate_caches();
            cuda::rmsnorm(n.x, n.w, n.y, n.n_rows, n.width, n.eps, stream);
          },
          [&](const RopeRec& p) {
            invalidate_caches();
            RopeArgs a;
            a.x = p.x, a.n_tokens = p.n_tokens, a.n_heads = p.n_heads, a.head_dim = p.head_dim;
            a.pos = {p.pos_dev, p.pos_add};
            a.neox = p.neox, a.n_rot = p.n_rot, a.base = p.base, a.freq_scale = p.freq_scale;
            a.freq_factors = p.freq_factors;
            a.ext_factor = p.ext_factor, a.yarn_low = p.yarn_low;
            a.yarn_high = p.yarn_high, a.mscale = p.mscale;
            cuda::rope(a, stream);
          },
          [&](const KvStoreRec& k) {
            invalidate_caches();
            cuda::kv_store(k.f16, k.k_quant, k.v_quant, k.k_cache, k.v_cache, k.k, k.v, k.n_tokens,
                           {k.pos_dev, k.pos_add}, k.k_width, k.v_width, stream);
          },
          [&](const AttentionRec& at) {
            invalidate_caches();
            const AttnArgs a = attn_args(at);
            if (a.n_tokens > kMaxMatvecTokens && attention_prefill_supported(a)) {
              attention_prefill(a, stream);
            } else {
              const int splits = attention_splits(a, info.sm_count);
              if (attention_partials_bytes(a, splits) > attn_part.bytes)
                fail("internal error: attention partials workspace too small");
              attention_decode(a, splits, static_cast<float*>(attn_part.ptr), stream);
            }
          },
          [&](const SwigluRec& g) {
            invalidate_caches();
            cuda::swiglu(g.gate, g.up, g.out, g.n, stream);
          },
          [&](const AddRec& a) {
            invalidate_caches();
            cuda::add(a.x, a.y, a.n, stream);
          },
          [&](const CopyRowsRec& c) {
            invalidate_caches();
            cuda::copy_rows(c.src, c.src_stride, c.dst, c.dst_stride, c.n_rows, c.width, stream);
          },
          [&](const SigmoidMulRec& g) {
            invalidate_caches();
            cuda::sigmoid_mul(g.x, g.g, g.n, stream);
          },
          [&](const L2normRec& n) {
            invalidate_caches();
            cuda::l2norm(n.x, n.n_tokens, n.rows_per_token, n.width, n.token_stride, n.eps, stream);
          },
          [&](const RmsnormGatedRec& n) {
            invalidate_caches();
            cuda::rmsnorm_gated(n.x, n.w, n.z, n.y, n.n_rows, n.width, n.eps, stream);
          },
          [&](const DeltaGatesRec& g) {
            invalidate_caches();
            cuda::delta_net_gates(g.alpha, g.beta, g.dt_bias, g.a, g.n_tokens, g.n_heads, stream);
          },
          [&](const ConvRec& c) {
            invalidate_caches();
            cuda::ssm_conv(c.a, stream);
          },
          [&](const DeltaNetRec& d) {
            invalidate_caches();
            cuda::gated_delta_net(d.a, stream);
          },
          [&](const MoeRouteRec& m) {
            invalidate_caches();
            cuda::moe_route(m.logits, m.n_tokens, m.n_expert, m.n_used, m.normalize, m.scale, m.ids,
                            m.weights, stream);
          },
          [&](const MoeMatmulRec& m) {
            invalidate_caches();
            cuda::moe_matmul(m.a, m.workspace, stream);
          },
          [&](const MoeCombineRec& m) {
            invalidate_caches();
            cuda::moe_combine(m.y, m.weights, m.n_tokens, m.n_used, m.width, m.out, stream);
          },
          [&](const SigmoidScaleRowsRec& g) {
            invalidate_caches();
            cuda::sigmoid_scale_rows(g.y, g.g, g.n_rows, g.width, stream);
          },
      },
      r);
}

}  // namespace straw::cuda
