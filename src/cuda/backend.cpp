// CudaBackend: construction, memory (budget, arena, uploads, pinned staging) and the ops'
// host-side halves (argument checks, pointer resolution, workspace sizing). Each op ends in
// Impl::submit with a record that issue.cpp turns into kernel launches and graphs.cpp captures,
// replays or compares.
#include <algorithm>
#include <cstring>

#include "cuda/backend_impl.h"
#include "quant/quant.h"
#include "util/str.h"

namespace straw::cuda {

namespace {

class CudaBuffer final : public ops::Buffer {
 public:
  CudaBuffer(std::shared_ptr<DeviceMemory> mem, void* p, size_t size)
      : mem_(std::move(mem)), p_(p), size_(size) {}
  ~CudaBuffer() override { mem_->release(p_); }
  void* data() override { return p_; }
  size_t size() const override { return size_; }

 private:
  std::shared_ptr<DeviceMemory> mem_;
  void* p_;
  size_t size_;
};

// An expert tensor: its n_expert matrices, expert_bytes apart.
size_t weight_bytes(const ops::Weight& w) {
  return w.n_expert > 1 ? w.expert_bytes * size_t(w.n_expert) : w.row_bytes * size_t(w.n_out);
}

void check_supported(const ops::Weight& w, const char* what) {
  if (!cuda_supports(w.type))
    fail("the CUDA backend has no kernels for ", quant::type_name(w.type), " ", what,
         " (supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 IQ4_NL IQ4_XS Q4_K Q5_K Q6_K); keep "
         "those layers on the CPU (--gpu-layers) or use a file without this type");
}

// The CUDA caches: f16 or f32 rows (K and V of one float type, or one of them quantized), or
// q8_0 / q4_0 blocks. The quantized ones run in the flash-decoding kernel only and have not run on
// a GPU yet: Model::load keeps attention with them on the CPU (PlanOptions::cpu_attention), so
// only the kernel tests reach them.
struct GpuKv {
  bool f16;
  KvQuant k_quant, v_quant;
};
KvQuant kv_quant(ops::KvType t) {
  return t == ops::KvType::Q8_0   ? KvQuant::Q8_0
         : t == ops::KvType::Q4_0 ? KvQuant::Q4_0
                                  : KvQuant::None;
}
GpuKv gpu_kv(const ops::KvLayer& kv) {
  const bool k_f32 = kv.k_type == ops::KvType::F32, v_f32 = kv.v_type == ops::KvType::F32;
  const bool k_f16 = kv.k_type == ops::KvType::F16, v_f16 = kv.v_type == ops::KvType::F16;
  if ((k_f32 && v_f16) || (k_f16 && v_f32))
    fail("internal error: a ", ops::kv_type_name(kv.k_type), " / ", ops::kv_type_name(kv.v_type),
         " (K / V) KV cache was placed on the GPU (its float caches are f16 or f32 for both)");
  return {!k_f32 && !v_f32, kv_quant(kv.k_type), kv_quant(kv.v_type)};
}

}  // namespace

// ---- Impl: setup and memory ------------------------------------------------------------------

CudaBackend::Impl::Impl(const CudaOptions& o) : options(o) {}

CudaBackend::Impl::~Impl() {
  cudaSetDevice(options.device);
  if (stream) {
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &st) == cudaSuccess && st != cudaStreamCaptureStatusNone) {
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(stream, &g);
      if (g) cudaGraphDestroy(g);
    }
    cudaStreamSynchronize(stream);
  }
  destroy_graphs();
  if (cublas) cublasDestroy(cublas);  // before its workspace (cublas_ws) is freed
  if (mem) {
    for (void* p : weight_blocks) mem->release(p);
    for (Workspace* w : {&act_q8, &act_f16, &tile_f16, &attn_part, &cublas_ws, &ids, &moe, &step})
      mem->release(w->ptr);
  }
  for (void* p : {pinned_up[0], pinned_up[1], pinned_down, pinned_step, pinned_rows})
    if (p) cudaFreeHost(p);
  for (cudaEvent_t e : {up_done[0], up_done[1], step_uploaded, rows_consumed})
    if (e) cudaEventDestroy(e);
  if (stream) cudaStreamDestroy(stream);
  cudaGetLastError();
}

void CudaBackend::Impl::need_device(const void* p, size_t bytes, const char* what) const {
  if (bytes == 0) return;
  if (!mem->contains(p, bytes))
    fail("CUDA backend: the ", what, " (", human_bytes(bytes),
         ") is not in this backend's device memory (internal error: buffers given to the GPU "
         "backend must come from its alloc())");
}

const void* CudaBackend::Impl::device_copy(const void* host, size_t bytes) {
  if (const void* d = find_upload(host, bytes)) return d;
  void* p = mem->allocate(bytes, "weights");
  weight_blocks.push_back(p);
  // Synchronous copy on the legacy stream, which does not order with the (non-blocking) compute
  // stream: allowed while that stream is being captured. A pageable host -> device cudaMemcpy
  // may return once the data is staged, before the DMA lands, so wait for the legacy stream:
  // kernels on the compute stream are not ordered after it.
  STRAW_CUDA_CHECK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
  STRAW_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
  uploaded[host] = {p, bytes};
  return p;
}

const void* CudaBackend::Impl::on_device(const void* p, size_t bytes) {
  return mem->contains(p, bytes) ? p : device_copy(p, bytes);
}

const void* CudaBackend::Impl::resolve(const ops::Weight& w) {
  return on_device(w.data, weight_bytes(w));
}

const float* CudaBackend::Impl::f32_vector(const ops::Weight& w, int64_t n, const char* what) {
  if (w.type != quant::Type::F32 || w.n_in * w.n_out < n)
    fail("internal error: ", what, " of ", w.n_in * w.n_out, " ", quant::type_name(w.type),
         " values where ", n, " F32 are needed");
  return static_cast<const float*>(resolve(w));
}

void CudaBackend::Impl::ensure(Workspace& ws, size_t bytes, const char* what) {
  if (ws.bytes >= bytes) return;
  // A graph (or the capture under way) may point at the old buffer: run the step op by op and
  // forget the graphs before the buffer moves.
  flush_to_eager();
  destroy_graphs();
  mem->release(ws.ptr);
  ws = {};
  const size_t size = align_up(bytes, kAlign);
  ws.ptr = mem->allocate(size, what);
  ws.bytes = size;
  if (&ws == &cublas_ws) STRAW_CUBLAS_CHECK(cublasSetWorkspace(cublas, ws.ptr, ws.bytes));
}

void CudaBackend::Impl::upload(void* dst, const void* src, size_t bytes) {
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src);
  for (size_t off = 0; off < bytes; off += kPinnedChunk) {
    const size_t n = std::min(kPinnedChunk, bytes - off);
    const int slot = up_next;
    up_next ^= 1;
    STRAW_CUDA_CHECK(cudaEventSynchronize(up_done[slot]));  // its previous copy is done
    std::memcpy(pinned_up[slot], s + off, n);
    STRAW_CUDA_CHECK(cudaMemcpyAsync(d + off, pinned_up[slot], n, cudaMemcpyHostToDevice, stream));
    STRAW_CUDA_CHECK(cudaEventRecord(up_done[slot], stream));
  }
}

void CudaBackend::Impl::grow_pinned(void*& p, size_t& have, size_t need) {
  if (have >= need) return;
  if (p) STRAW_CUDA_CHECK(cudaFreeHost(p));
  p = nullptr;
  have = 0;
  const size_t size = align_up(need, 4096);
  STRAW_CUDA_CHECK(cudaHostAlloc(&p, size, cudaHostAllocDefault));
  have = size;
}

StepPos CudaBackend::Impl::step_pos(int64_t pos0) const {
  if (in_step) return {static_cast<const int32_t*>(step.ptr), pos0 - step_pos0};
  return {nullptr, pos0};
}

// ---- CudaBackend --------------------------------------------------------------------------------

CudaBackend::CudaBackend(const CudaOptions& options) : impl_(std::make_unique<Impl>(options)) {
  Impl& s = *impl_;
  s.info = device_info(options.device);
  STRAW_CUDA_CHECK(cudaSetDevice(options.device));
  const uint64_t budget =
      options.vram_budget ? options.vram_budget : default_vram_budget(options.device);
  s.mem = std::make_shared<DeviceMemory>(options.device, budget);
  STRAW_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
  STRAW_CUBLAS_CHECK(cublasCreate(&s.cublas));
  STRAW_CUBLAS_CHECK(cublasSetStream(s.cublas, s.stream));
  for (int i = 0; i < 2; ++i) {
    STRAW_CUDA_CHECK(cudaHostAlloc(&s.pinned_up[i], kPinnedChunk, cudaHostAllocDefault));
    STRAW_CUDA_CHECK(cudaEventCreateWithFlags(&s.up_done[i], cudaEventDisableTiming));
  }
  STRAW_CUDA_CHECK(cudaHostAlloc(&s.pinned_down, kPinnedChunk, cudaHostAllocDefault));
  STRAW_CUDA_CHECK(cudaEventCreateWithFlags(&s.step_uploaded, cudaEventDisableTiming));
  STRAW_CUDA_CHECK(cudaEventCreateWithFlags(&s.rows_consumed, cudaEventDisableTiming));
  s.stats.vram_budget = budget;
}

CudaBackend::~CudaBackend() = default;

std::unique_ptr<ops::Backend> make_cuda_backend(const CudaOptions& options) {
  return std::make_unique<CudaBackend>(options);
}

const DeviceInfo& CudaBackend::info() const {
  return impl_->info;
}

CUstream_st* CudaBackend::stream() const {
  return impl_->stream;
}

CudaStats CudaBackend::stats() const {
  CudaStats st = impl_->stats;
  st.vram_budget = impl_->mem->budget();
  st.vram_used = impl_->mem->used();
  st.vram_peak = impl_->mem->peak();
  return st;
}

void CudaBackend::set_graphs(bool on) {
  STRAW_CUDA_CHECK(cudaSetDevice(impl_->options.device));
  impl_->flush_to_eager();
  impl_->options.graphs = on;
  if (!on) impl_->destroy_graphs();
}

void CudaBackend::synchronize() {
  STRAW_CUDA_CHECK(cudaSetDevice(impl_->options.device));
  impl_->flush_to_eager();
  STRAW_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
}

uint64_t CudaBackend::prepared_bytes(const ops::Weight& w) {
  return align_up(weight_bytes(w), kAlign);
}

void CudaBackend::reserve_weights(uint64_t bytes) {
  Impl& s = *impl_;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  if (s.arena) fail("internal error: CUDA weight arena reserved twice");
  if (bytes == 0) return;
  s.arena = static_cast<uint8_t*>(s.mem->allocate(bytes, "the model's weights"));
  s.arena_size = align_up(bytes, kAlign);
  s.weight_blocks.push_back(s.arena);
}

std::unique_ptr<ops::Buffer> CudaBackend::alloc(size_t bytes) {
  Impl& s = *impl_;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  s.flush_to_eager();
  s.invalidate_caches();  // the new block may reuse the address of a freed one
  void* p = s.mem->allocate(bytes, "the KV cache and activation buffers");
  auto buf = std::make_unique<CudaBuffer>(s.mem, p, bytes);
  STRAW_CUDA_CHECK(cudaMemsetAsync(p, 0, align_up(std::max<size_t>(bytes, 1), kAlign), s.stream));
  return buf;
}

void CudaBackend::to_host(const void* src, void* dst, size_t bytes) {
  Impl& s = *impl_;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  s.flush_to_eager();
  s.need_device(src, bytes, "source of a copy to the host");
  const auto* from = static_cast<const uint8_t*>(src);
  auto* to = static_cast<uint8_t*>(dst);
  for (size_t off = 0; off < bytes; off += kPinnedChunk) {
    const size_t n = std::min(kPinnedChunk, bytes - off);
    STRAW_CUDA_CHECK(
        cudaMemcpyAsync(s.pinned_down, from + off, n, cudaMemcpyDeviceToHost, s.stream));
    STRAW_CUDA_CHECK(cudaStreamSynchronize(s.stream));
    std::memcpy(to + off, s.pinned_down, n);
  }
}

void CudaBackend::from_host(const void* src, void* dst, size_t bytes) {
  Impl& s = *impl_;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  s.flush_to_eager();
  s.need_device(dst, bytes, "destination of a copy from the host");
  s.invalidate_caches();
  s.upload(dst, src, bytes);
}

ops::Weight CudaBackend::prepare_weight(const ops::Weight& w) {
  Impl& s = *impl_;
  if (!w) return w;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  s.flush_to_eager();
  check_supported(w, "tensors");
  const size_t bytes = weight_bytes(w);
  ops::Weight out = w;
  out.layout = kDeviceLayout;
  if (s.mem->contains(w.data, bytes)) return out;
  if (const void* d = s.find_upload(w.data, bytes)) {
    out.data = d;  // the same tensor again (tied embeddings)
    return out;
  }
  void* dev = nullptr;
  const size_t size = align_up(bytes, kAlign);
  if (s.arena && s.arena_used + size <= s.arena_size) {
    dev = s.arena + s.arena_used;
    s.arena_used += size;
  } else {
    dev = s.mem->allocate(bytes, "the model's weights");
    s.weight_blocks.push_back(dev);
  }
  s.upload(dev, w.data, bytes);
  s.uploaded[w.data] = {dev, bytes};
  out.data = dev;
  return out;
}

// ---- ops: checks and records --------------------------------------------------------------------

void CudaBackend::get_rows(const ops::Weight& table, std::span<const int32_t> tokens, float* out) {
  Impl& s = *impl_;
  const int n = int(tokens.size());
  if (n == 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  check_supported(table, "embedding tables");
  for (size_t t = 0; t < tokens.size(); ++t)
    if (tokens[t] < 0 || tokens[t] >= table.n_out)
      fail("token id ", tokens[t], " at position ", t, " is outside the vocabulary (0..",
           table.n_out - 1, ")");
  const size_t out_bytes = size_t(n) * size_t(table.n_in) * sizeof(float);
  s.need_device(out, out_bytes, "embedding output");
  const size_t bytes = weight_bytes(table);
  const void* dev_table = nullptr;
  if (s.mem->contains(table.data, bytes)) {
    dev_table = table.data;
  } else if (const void* d = s.find_upload(table.data, bytes)) {
    dev_table = d;
  }
  if (dev_table) {
    // Token ids from the step parameters when they are the step's tokens (a replayed graph then
    // reads the new ids), else uploaded for this op alone.
    const bool step_ids = s.in_step && s.step_tokens.size() == tokens.size() &&
                          std::equal(tokens.begin(), tokens.end(), s.step_tokens.begin());
    const int32_t* ids = static_cast<const int32_t*>(s.step.ptr) + 1;
    if (!step_ids) {
      s.flush_to_eager();
      s.ensure(s.ids, tokens.size_bytes(), "token ids");
      s.upload(s.ids.ptr, tokens.data(), tokens.size_bytes());
      ids = static_cast<const int32_t*>(s.ids.ptr);
    }
    s.submit(GetRowsDeviceRec{table.type, dev_table, table.row_bytes, table.n_in, ids, n, out});
    return;
  }
  // Host-resident table: dequantize the rows here into pinned memory, copied in by the op (a
  // captured graph copies from the same pinned buffer, refilled each step).
  if (s.pinned_rows_bytes < out_bytes) {
    s.flush_to_eager();
    s.destroy_graphs();
    STRAW_CUDA_CHECK(cudaStreamSynchronize(s.stream));
    s.grow_pinned(s.pinned_rows, s.pinned_rows_bytes, out_bytes);
  }
  STRAW_CUDA_CHECK(cudaEventSynchronize(s.rows_consumed));
  auto* rows = static_cast<float*>(s.pinned_rows);
  const auto* base = static_cast<const uint8_t*>(table.data);
  for (int t = 0; t < n; ++t)
    quant::dequantize_row(table.type, base + size_t(tokens[t]) * table.row_bytes,
                          rows + size_t(t) * table.n_in, table.n_in);
  s.submit(CopyInRec{s.pinned_rows, out, out_bytes});
}

void CudaBackend::matmul(const ops::Weight& w, const float* x, float* y, int n_tokens) {
  Impl& s = *impl_;
  if (n_tokens <= 0 || w.n_out == 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  check_supported(w, "weights");
  const void* wd = s.resolve(w);
  s.need_device(x, size_t(n_tokens) * w.n_in * sizeof(float), "matmul input");
  s.need_device(y, size_t(n_tokens) * w.n_out * sizeof(float), "matmul output");
  if (!matmul_uses_gemm(w.type, w.n_in, n_tokens)) {
    if (matvec_prefers_int8(w.type))
      s.ensure(s.act_q8, act_q8_bytes(w.n_in, n_tokens), "8-bit activations");
  } else {
    if (w.type != quant::Type::F32)
      s.ensure(s.act_f16, size_t(n_tokens) * w.n_in * 2, "binary16 activations");
    if (w.type != quant::Type::F32 && w.type != quant::Type::F16)
      s.ensure(s.tile_f16, std::min(kDequantTileBytes, size_t(w.n_out) * w.n_in * 2),
               "binary16 weight tiles");
    s.ensure(s.cublas_ws, kCublasWorkspaceBytes, "the cuBLAS workspace");
  }
  s.submit(MatmulRec{w.type, wd, w.row_bytes, w.n_in, w.n_out, x, y, n_tokens});
}

void CudaBackend::add_bias(float* y, const ops::Weight& b, int64_t n_rows, int64_t width) {
  Impl& s = *impl_;
  if (n_rows <= 0 || width <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  const float* bd = s.f32_vector(b, width, "bias");
  s.need_device(y, size_t(n_rows * width) * sizeof(float), "bias output");
  s.submit(BiasRec{y, bd, n_rows, width});
}

void CudaBackend::rmsnorm(const float* x, const ops::Weight& w, float* y, int64_t n_rows,
                          int64_t width, float eps) {
  Impl& s = *impl_;
  if (n_rows <= 0 || width <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  const float* wd = s.f32_vector(w, width, "norm weights");
  s.need_device(x, size_t(n_rows * width) * sizeof(float), "rmsnorm input");
  s.need_device(y, size_t(n_rows * width) * sizeof(float), "rmsnorm output");
  s.submit(RmsnormRec{x, wd, y, n_rows, width, eps});
}

void CudaBackend::rope(float* x, int n_tokens, int n_heads, int head_dim, int64_t pos0,
                       const ops::RopeParams& p) {
  Impl& s = *impl_;
  if (n_tokens <= 0 || p.n_rot <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  s.need_device(x, size_t(n_tokens) * n_heads * head_dim * sizeof(float), "rope input");
  const float* ff = p.freq_factors ? static_cast<const float*>(s.on_device(
                                         p.freq_factors, size_t(p.n_rot / 2) * sizeof(float)))
                                   : nullptr;
  const StepPos pos = s.step_pos(pos0);
  s.submit(RopeRec{x, n_tokens, n_heads, head_dim, pos.dev, pos.add, p.mode == ops::RopeMode::Neox,
                   p.n_rot, p.base, p.freq_scale, ff, p.ext_factor, p.yarn_low, p.yarn_high,
                   p.mscale});
}

void CudaBackend::kv_store(const ops::KvLayer& kv, const float* k, const float* v, int n_tokens,
                           int64_t pos0, int64_t k_width, int64_t v_width) {
  Impl& s = *impl_;
  if (n_tokens <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  if (pos0 < 0 || pos0 + n_tokens > kv.n_ctx)
    fail("the context is full: positions ", pos0, "..", pos0 + n_tokens - 1,
         " do not fit a context of ", kv.n_ctx, " tokens (use a larger --ctx)");
  if (pos0 + n_tokens > int64_t(INT32_MAX)) fail("CUDA backend: positions beyond 2^31");
  const GpuKv g = gpu_kv(kv);
  s.need_device(kv.k, size_t(kv.n_ctx) * ops::kv_row_bytes(kv.k_type, k_width), "K cache");
  s.need_device(kv.v, size_t(kv.n_ctx) * ops::kv_row_bytes(kv.v_type, v_width), "V cache");
  s.need_device(k, size_t(n_tokens) * k_width * sizeof(float), "K input");
  s.need_device(v, size_t(n_tokens) * v_width * sizeof(float), "V input");
  const StepPos pos = s.step_pos(pos0);
  s.submit(KvStoreRec{g.f16, g.k_quant, g.v_quant, kv.k, kv.v, k, v, n_tokens, pos.dev, pos.add,
                      k_width, v_width});
}

void CudaBackend::attention(const float* q, const ops::KvLayer& kv, float* out,
                            const ops::AttentionParams& p) {
  Impl& s = *impl_;
  if (p.n_tokens <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  if (p.pos0 < 0 || p.pos0 + p.n_tokens > kv.n_ctx)
    fail("the context is full: positions ", p.pos0, "..", p.pos0 + p.n_tokens - 1,
         " do not fit a context of ", kv.n_ctx, " tokens (use a larger --ctx)");
  const GpuKv g = gpu_kv(kv);
  s.need_device(q, size_t(p.n_tokens) * p.n_heads * p.head_dim * sizeof(float), "attention query");
  s.need_device(out, size_t(p.n_tokens) * p.n_heads * p.head_dim_v * sizeof(float),
                "attention output");
  s.need_device(kv.k,
                size_t(kv.n_ctx) * ops::kv_row_bytes(kv.k_type, int64_t(p.n_kv_heads) * p.head_dim),
                "K cache");
  s.need_device(
      kv.v, size_t(kv.n_ctx) * ops::kv_row_bytes(kv.v_type, int64_t(p.n_kv_heads) * p.head_dim_v),
      "V cache");
  const StepPos pos = s.step_pos(p.pos0);
  const AttentionRec r{q,          kv.k,         kv.v,    g.f16,   g.k_quant, g.v_quant,
                       out,        p.n_tokens,   pos.dev, pos.add, p.n_heads, p.n_kv_heads,
                       p.head_dim, p.head_dim_v, p.scale, kv.n_ctx};
  AttnArgs a;
  a.n_tokens = r.n_tokens, a.n_heads = r.n_heads, a.n_kv_heads = r.n_kv_heads;
  a.head_dim = r.head_dim, a.head_dim_v = r.head_dim_v, a.n_ctx = r.n_ctx;
  a.k_quant = r.k_quant, a.v_quant = r.v_quant;
  if (!(p.n_tokens > kMaxMatvecTokens && attention_prefill_supported(a)))
    s.ensure(s.attn_part, attention_partials_bytes(a, attention_splits(a, s.info.sm_count)),
             "attention partials");
  s.submit(r);
}

void CudaBackend::swiglu(const float* gate, const float* up, float* out, int64_t n) {
  Impl& s = *impl_;
  if (n <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  s.need_device(gate, size_t(n) * sizeof(float), "swiglu gate");
  s.need_device(up, size_t(n) * sizeof(float), "swiglu up");
  s.need_device(out, size_t(n) * sizeof(float), "swiglu output");
  s.submit(SwigluRec{gate, up, out, n});
}

void CudaBackend::add(float* x, const float* y, int64_t n) {
  Impl& s = *impl_;
  if (n <= 0) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  s.need_device(x, size_t(n) * sizeof(float), "residual");
  s.need_device(y, size_t(n) * sizeof(float), "residual addend");
  s.submit(AddRec{x, y, n});
}

}  // namespace straw::cuda
