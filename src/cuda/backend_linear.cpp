// CudaBackend's ops of linear-attention (Gated DeltaNet) and gated-attention layers (qwen35):
// argument checks, then one record each (recorded into CUDA Graphs like every other op).
#include "cuda/backend_impl.h"
#include "util/str.h"

namespace straw::cuda {

namespace {

// Floats spanned by n rows of `width` that start `stride` floats apart.
size_t span_floats(int64_t n, int64_t stride, int64_t width) {
  return n <= 0 ? 0 : size_t((n - 1) * stride + width);
}

}  // namespace

void CudaBackend::copy_rows(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                            int64_t n_rows, int64_t width) {
  Impl& s = *impl_;
  if (n_rows <= 0 || width <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  s.need_device(src, span_floats(n_rows, src_stride, width) * sizeof(float), "copy_rows source");
  s.need_device(dst, span_floats(n_rows, dst_stride, width) * sizeof(float),
                "copy_rows destination");
  s.submit(CopyRowsRec{src, src_stride, dst, dst_stride, n_rows, width});
}

void CudaBackend::sigmoid_mul(float* x, const float* g, int64_t n) {
  Impl& s = *impl_;
  if (n <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  s.need_device(x, size_t(n) * sizeof(float), "gated output");
  s.need_device(g, size_t(n) * sizeof(float), "output gate");
  s.submit(SigmoidMulRec{x, g, n});
}

void CudaBackend::l2norm(float* x, int n_tokens, int rows_per_token, int64_t width,
                         int64_t token_stride, float eps) {
  Impl& s = *impl_;
  if (n_tokens <= 0 || rows_per_token <= 0 || width <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  s.need_device(x, span_floats(n_tokens, token_stride, rows_per_token * width) * sizeof(float),
                "l2norm rows");
  s.submit(L2normRec{x, n_tokens, rows_per_token, width, token_stride, eps});
}

void CudaBackend::rmsnorm_gated(const float* x, const ops::Weight& w, const float* z, float* y,
                                int64_t n_rows, int64_t width, float eps) {
  Impl& s = *impl_;
  if (n_rows <= 0 || width <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  const float* wd = s.f32_vector(w, width, "gated norm weights");
  const size_t bytes = size_t(n_rows * width) * sizeof(float);
  s.need_device(x, bytes, "gated norm input");
  s.need_device(z, bytes, "gated norm gate");
  s.need_device(y, bytes, "gated norm output");
  s.submit(RmsnormGatedRec{x, wd, z, y, n_rows, width, eps});
}

void CudaBackend::delta_net_gates(float* alpha, float* beta, const ops::Weight& dt_bias,
                                  const ops::Weight& a, int n_tokens, int n_heads) {
  Impl& s = *impl_;
  if (n_tokens <= 0 || n_heads <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  const float* bias = s.f32_vector(dt_bias, n_heads, "dt bias");
  const float* ad = s.f32_vector(a, n_heads, "decay rates (ssm_a)");
  const size_t bytes = size_t(n_tokens) * n_heads * sizeof(float);
  s.need_device(alpha, bytes, "decay gate");
  s.need_device(beta, bytes, "update gate");
  s.submit(DeltaGatesRec{alpha, beta, bias, ad, n_tokens, n_heads});
}

void CudaBackend::ssm_conv(const ops::ConvParams& p) {
  Impl& s = *impl_;
  if (p.n_tokens <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  if (p.kernel < 1 || p.kernel > kMaxConvKernel || p.n_channels < 1 || p.x_stride < p.n_channels)
    fail("internal error: CUDA ssm_conv with ", p.n_channels, " channels, kernel ", p.kernel,
         " (at most ", kMaxConvKernel, "), stride ", p.x_stride);
  const int64_t C = p.n_channels, K = p.kernel;
  // The taps are a weight vector: on the device once the layer is placed here (prepare_weight),
  // uploaded once otherwise.
  const auto* w = static_cast<const float*>(s.on_device(p.w, size_t(C * K) * sizeof(float)));
  const size_t state_bytes = size_t((K - 1) * C) * sizeof(float);
  s.need_device(p.x, span_floats(p.n_tokens, p.x_stride, C) * sizeof(float), "conv input");
  s.need_device(p.y, size_t(p.n_tokens * C) * sizeof(float), "conv output");
  s.need_device(p.state, state_bytes, "conv state");
  if (p.snapshot) s.need_device(p.snapshot, state_bytes, "conv state snapshot");
  ConvArgs a;
  a.n_tokens = p.n_tokens, a.n_channels = p.n_channels, a.kernel = p.kernel;
  a.x = p.x, a.x_stride = p.x_stride, a.w = w, a.state = p.state, a.y = p.y, a.silu = p.silu;
  if (p.snapshot) a.snapshot = p.snapshot, a.snapshot_after = p.snapshot_after;
  s.submit(ConvRec{a});
}

void CudaBackend::gated_delta_net(const ops::DeltaNetParams& p) {
  Impl& s = *impl_;
  if (p.n_tokens <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  if (p.n_k_heads <= 0 || p.n_v_heads % p.n_k_heads != 0 || p.head_dim <= 0)
    fail("internal error: CUDA gated_delta_net with ", p.n_v_heads, " value heads over ",
         p.n_k_heads, " key heads of ", p.head_dim);
  const int64_t T = p.n_tokens, S = p.head_dim, Hk = p.n_k_heads, Hv = p.n_v_heads;
  const size_t state_bytes = size_t(Hv * S * S) * sizeof(float);
  s.need_device(p.q, span_floats(T, p.qk_stride, Hk * S) * sizeof(float), "delta-rule queries");
  s.need_device(p.k, span_floats(T, p.qk_stride, Hk * S) * sizeof(float), "delta-rule keys");
  s.need_device(p.v, span_floats(T, p.v_stride, Hv * S) * sizeof(float), "delta-rule values");
  s.need_device(p.g, size_t(T * Hv) * sizeof(float), "decay gate");
  s.need_device(p.beta, size_t(T * Hv) * sizeof(float), "update gate");
  s.need_device(p.state, state_bytes, "delta-rule state");
  s.need_device(p.out, size_t(T * Hv * S) * sizeof(float), "delta-rule output");
  if (p.snapshot) s.need_device(p.snapshot, state_bytes, "delta-rule state snapshot");
  DeltaNetArgs a;
  a.n_tokens = p.n_tokens, a.n_k_heads = p.n_k_heads, a.n_v_heads = p.n_v_heads;
  a.head_dim = p.head_dim;
  a.q = p.q, a.k = p.k, a.qk_stride = p.qk_stride, a.v = p.v, a.v_stride = p.v_stride;
  a.g = p.g, a.beta = p.beta, a.state = p.state, a.out = p.out, a.scale = p.scale;
  if (p.snapshot) a.snapshot = p.snapshot, a.snapshot_after = p.snapshot_after;
  s.submit(DeltaNetRec{a});
}

}  // namespace straw::cuda
