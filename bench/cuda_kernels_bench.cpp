// CUDA kernel microbenchmarks: the device-to-device copy bandwidth (the reference), decode matvec
// per weight format on Qwen2.5-32B / 7B layer shapes (int8 dot products and, for the quantized
// formats, the dequantize-on-the-fly alternative), flash-decoding over long caches, the gated
// delta rule of a Qwen3.5-27B layer, and prompt GEMMs (dequantize + cuBLAS) against 8-token
// matvecs. Device time from CUDA events; weights are
// rotated over copies that together exceed the L2 cache, so the numbers are DRAM numbers.
// Counters: GB/s (bytes that must be read), of_copy (that over the copy bandwidth measured first),
// TFLOP/s for GEMMs. Skipped with a message without CUDA or without a GPU.
#ifdef STRAW_HAVE_CUDA

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_backend.h"
#include "cuda/kernels.h"
#include "cuda/timer.h"
#include "quant/f16.h"
#include "quant/types.h"

namespace {

using namespace straw;
using quant::Type;

double g_copy_bytes_per_s = 0;  // from BM_Copy, which runs first

cuda::CudaBackend* gpu(benchmark::State& st) {
  static std::unique_ptr<cuda::CudaBackend> g;
  static std::string why;
  if (!g && why.empty()) {
    if (cuda::cuda_available(&why)) g = std::make_unique<cuda::CudaBackend>(cuda::CudaOptions{});
  }
  if (!g) st.SkipWithError(("no usable CUDA device: " + why).c_str());
  return g.get();
}

// Random bytes with every block's fp16 scales set to small finite values: timing is the same as
// for real weights and no NaN or infinity appears.
std::vector<uint8_t> random_weights(Type t, int64_t n_in, int64_t n_out) {
  const size_t bytes = quant::row_bytes(t, n_in) * size_t(n_out);
  std::vector<uint8_t> w(bytes);
  std::mt19937_64 rng(uint64_t(t) * 1000003u + uint64_t(n_in));
  for (size_t i = 0; i + 8 <= bytes; i += 8) {
    const uint64_t r = rng();
    std::memcpy(w.data() + i, &r, 8);
  }
  const quant::TypeInfo& ti = quant::type_info(t);
  auto set16 = [&](size_t off, uint16_t v) { std::memcpy(w.data() + off, &v, 2); };
  const uint16_t small = quant::fp32_to_fp16(0.01f);
  if (t == Type::F16 || t == Type::BF16) {
    for (size_t i = 0; i + 2 <= bytes; i += 2) {
      uint16_t v;
      std::memcpy(&v, w.data() + i, 2);
      set16(i, t == Type::F16 ? uint16_t((v & 0x83FF) | 0x3800) : uint16_t((v & 0x807F) | 0x3F00));
    }
  } else if (t == Type::F32) {
    for (size_t i = 0; i + 4 <= bytes; i += 4) {
      uint32_t v;
      std::memcpy(&v, w.data() + i, 4);
      v = (v & 0x807FFFFFu) | 0x3F000000u;
      std::memcpy(w.data() + i, &v, 4);
    }
  } else {
    std::vector<size_t> offs = {0};
    if (t == Type::Q4_1 || t == Type::Q5_1 || t == Type::Q4_K || t == Type::Q5_K) offs = {0, 2};
    if (t == Type::Q6_K) offs = {208};
    for (size_t b = 0; b < bytes / ti.type_size; ++b)
      for (size_t o : offs) set16(b * ti.type_size + o, small);
  }
  return w;
}

// Copies of one weight matrix on the device, enough to exceed the L2 cache three times over.
struct WeightSet {
  Type type = Type::F32;
  int64_t n_in = 0, n_out = 0;
  size_t bytes = 0;
  std::vector<std::unique_ptr<ops::Buffer>> copies;
};

WeightSet& weights(cuda::CudaBackend& g, Type t, int64_t n_in, int64_t n_out) {
  static WeightSet set;
  if (set.type == t && set.n_in == n_in && set.n_out == n_out && !set.copies.empty()) return set;
  set.copies.clear();
  set.type = t, set.n_in = n_in, set.n_out = n_out;
  const std::vector<uint8_t> host = random_weights(t, n_in, n_out);
  set.bytes = host.size();
  const size_t n = std::clamp<size_t>(3 * g.info().l2_bytes / set.bytes + 1, 1, 16);
  for (size_t i = 0; i < n; ++i) {
    set.copies.push_back(g.alloc(set.bytes));
    g.from_host(host.data(), set.copies.back()->data(), set.bytes);
  }
  return set;
}

std::unique_ptr<ops::Buffer> random_floats(cuda::CudaBackend& g, size_t n) {
  std::vector<float> v(n);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (auto& x : v) x = d(rng);
  auto b = g.alloc(n * sizeof(float));
  g.from_host(v.data(), b->data(), n * sizeof(float));
  return b;
}

void set_bandwidth_counters(benchmark::State& st, double bytes, double seconds) {
  const double bps = bytes / seconds;
  st.counters["GB/s"] = bps / 1e9;
  if (g_copy_bytes_per_s > 0) st.counters["of_copy"] = bps / g_copy_bytes_per_s;
}

void BM_Copy(benchmark::State& st) {
  cuda::CudaBackend* g = gpu(st);
  if (!g) return;
  const size_t bytes = size_t(1) << 30;
  auto a = g->alloc(bytes), b = g->alloc(bytes);
  cuda::EventTimer timer(g->stream());
  double total_s = 0;
  int64_t n = 0;
  for (auto _ : st) {
    timer.start();
    for (int i = 0; i < 4; ++i) cuda::copy_bytes(b->data(), a->data(), bytes, g->stream());
    const double s = timer.stop_ms() / 1e3 / 4;
    st.SetIterationTime(s);
    total_s += s;
    ++n;
  }
  g_copy_bytes_per_s = 2.0 * double(bytes) * double(n) / total_s;  // read + write
  st.counters["GB/s"] = g_copy_bytes_per_s / 1e9;
  st.counters["estimate_GB/s"] = g->info().bandwidth_estimate / 1e9;
}

void BM_Matvec(benchmark::State& st, Type t, int64_t n_in, int64_t n_out, int tokens, bool int8) {
  cuda::CudaBackend* g = gpu(st);
  if (!g) return;
  WeightSet& w = weights(*g, t, n_in, n_out);
  auto x = random_floats(*g, size_t(tokens) * n_in);
  auto y = g->alloc(size_t(tokens) * n_out * sizeof(float));
  auto q8 = g->alloc(cuda::act_q8_bytes(n_in, tokens));
  const float* xf = static_cast<const float*>(x->data());
  if (int8) cuda::quantize_act_q8(xf, n_in, tokens, q8->data(), g->stream());
  const cuda::ActQ8 xq = cuda::act_q8_view(q8->data(), n_in, tokens);
  const int reps = std::clamp(int(400e6 / double(w.bytes)), 8, 400);
  cuda::EventTimer timer(g->stream());
  double total_s = 0;
  int64_t n = 0;
  for (auto _ : st) {
    timer.start();
    for (int r = 0; r < reps; ++r) {
      cuda::MatvecArgs a;
      a.type = t, a.w = w.copies[size_t(r) % w.copies.size()]->data();
      a.row_bytes = quant::row_bytes(t, n_in), a.n_in = n_in, a.n_out = n_out;
      a.y = static_cast<float*>(y->data()), a.n_tokens = tokens;
      if (int8)
        cuda::matvec_int8(a, xq, g->stream());
      else
        cuda::matvec_float(a, xf, g->stream());
    }
    const double s = timer.stop_ms() / 1e3 / reps;
    st.SetIterationTime(s);
    total_s += s;
    ++n;
  }
  set_bandwidth_counters(st, double(w.bytes), total_s / double(n));
}

// Decode attention of one token over a full cache (K and V read once), rotating over 16 layers.
void BM_AttentionDecode(benchmark::State& st, int64_t n_ctx) {
  cuda::CudaBackend* g = gpu(st);
  if (!g) return;
  const int heads = 40, kv_heads = 8, hd = 128, layers = 16;
  const size_t kv_bytes = size_t(n_ctx) * kv_heads * hd * 2;
  std::vector<std::unique_ptr<ops::Buffer>> k, v;
  for (int l = 0; l < layers; ++l) k.push_back(g->alloc(kv_bytes)), v.push_back(g->alloc(kv_bytes));
  auto q = random_floats(*g, size_t(heads) * hd);
  auto out = g->alloc(size_t(heads) * hd * sizeof(float));
  cuda::AttnArgs a;
  a.q = static_cast<const float*>(q->data());
  a.f16 = true, a.out = static_cast<float*>(out->data());
  a.n_tokens = 1, a.pos = {nullptr, n_ctx - 1};
  a.n_heads = heads, a.n_kv_heads = kv_heads, a.head_dim = a.head_dim_v = hd;
  a.scale = 0.088f, a.n_ctx = n_ctx;
  const int splits = cuda::attention_splits(a, g->info().sm_count);
  auto part = g->alloc(cuda::attention_partials_bytes(a, splits));
  cuda::EventTimer timer(g->stream());
  double total_s = 0;
  int64_t n = 0;
  for (auto _ : st) {
    timer.start();
    for (int l = 0; l < layers; ++l) {
      a.k = k[size_t(l)]->data(), a.v = v[size_t(l)]->data();
      cuda::attention_decode(a, splits, static_cast<float*>(part->data()), g->stream());
    }
    const double s = timer.stop_ms() / 1e3 / layers;
    st.SetIterationTime(s);
    total_s += s;
    ++n;
  }
  set_bandwidth_counters(st, 2.0 * double(kv_bytes), total_s / double(n));
  st.counters["splits"] = splits;
}

// The gated delta rule of one Qwen3.5-27B linear-attention layer (16 key / 48 value heads of 128)
// over `tokens` tokens, rotating over 32 layers' states (3 MiB each, 96 MiB together: more than
// the L2). GB/s counts the state read and written once per call (what the kernel must move; q, k,
// v and the output are small beside it at decode).
void BM_DeltaNet(benchmark::State& st, int tokens) {
  cuda::CudaBackend* g = gpu(st);
  if (!g) return;
  const int hk = 16, hv = 48, S = 128, layers = 32;
  const size_t state_floats = size_t(hv) * S * S;
  std::vector<std::unique_ptr<ops::Buffer>> states;
  for (int l = 0; l < layers; ++l) states.push_back(random_floats(*g, state_floats));
  const int64_t qkv_width = int64_t(2 * hk + hv) * S;
  auto qkv = random_floats(*g, size_t(tokens) * qkv_width);
  auto gates = g->alloc(size_t(tokens) * hv * sizeof(float));  // zero: e^g = 1
  auto beta = g->alloc(size_t(tokens) * hv * sizeof(float));   // zero: no update, no growth
  auto out = g->alloc(size_t(tokens) * hv * S * sizeof(float));
  cuda::DeltaNetArgs a;
  a.n_tokens = tokens, a.n_k_heads = hk, a.n_v_heads = hv, a.head_dim = S;
  const auto* x = static_cast<const float*>(qkv->data());
  a.q = x, a.k = x + int64_t(hk) * S, a.v = x + int64_t(2 * hk) * S;
  a.qk_stride = a.v_stride = qkv_width;
  a.g = static_cast<const float*>(gates->data());
  a.beta = static_cast<const float*>(beta->data());
  a.out = static_cast<float*>(out->data());
  a.scale = 0.088f;
  cuda::EventTimer timer(g->stream());
  double total_s = 0;
  int64_t n = 0;
  for (auto _ : st) {
    timer.start();
    for (int l = 0; l < layers; ++l) {
      a.state = static_cast<float*>(states[size_t(l)]->data());
      cuda::gated_delta_net(a, g->stream());
    }
    const double s = timer.stop_ms() / 1e3 / layers;
    st.SetIterationTime(s);
    total_s += s;
    ++n;
  }
  set_bandwidth_counters(st, 2.0 * double(state_floats * sizeof(float)), total_s / double(n));
  st.counters["tokens/s"] = double(tokens) * double(n) / total_s;
}

// A prompt batch through the backend's matmul (T > 8: dequantize + cuBLAS), and the same tokens
// as 8-token matvecs, to place the switch-over.
void BM_PromptMatmul(benchmark::State& st, Type t, int64_t n_in, int64_t n_out, int tokens,
                     bool as_matvecs) {
  cuda::CudaBackend* g = gpu(st);
  if (!g) return;
  WeightSet& w = weights(*g, t, n_in, n_out);
  auto x = random_floats(*g, size_t(tokens) * n_in);
  auto y = g->alloc(size_t(tokens) * n_out * sizeof(float));
  const ops::Weight wt{t, n_in, n_out, quant::row_bytes(t, n_in), w.copies[0]->data(), 0};
  auto* xf = static_cast<float*>(x->data());
  auto* yf = static_cast<float*>(y->data());
  auto run = [&] {
    if (!as_matvecs) return g->matmul(wt, xf, yf, tokens);
    for (int t0 = 0; t0 < tokens; t0 += 8)
      g->matmul(wt, xf + size_t(t0) * n_in, yf + size_t(t0) * n_out, std::min(8, tokens - t0));
  };
  run();  // workspaces and cuBLAS heuristics outside the timing
  g->synchronize();
  cuda::EventTimer timer(g->stream());
  double total_s = 0;
  int64_t n = 0;
  for (auto _ : st) {
    timer.start();
    run();
    const double s = timer.stop_ms() / 1e3;
    st.SetIterationTime(s);
    total_s += s;
    ++n;
  }
  st.counters["TFLOP/s"] =
      2.0 * double(n_in) * double(n_out) * tokens / (total_s / double(n)) / 1e12;
  set_bandwidth_counters(st, double(w.bytes), total_s / double(n));
}

struct Shape {
  const char* name;
  int64_t n_in, n_out;
};

// Qwen2.5-32B (n_embd 5120, n_ff 27648, 8 KV heads of 128) and Qwen2.5-7B (3584, 18944).
constexpr Shape kShapes[] = {{"32B.attn_q", 5120, 5120},  {"32B.attn_kv", 5120, 1024},
                             {"32B.ffn_up", 5120, 27648}, {"32B.ffn_down", 27648, 5120},
                             {"7B.ffn_up", 3584, 18944},  {"7B.ffn_down", 18944, 3584}};

const Type kTypes[] = {Type::IQ4_XS, Type::Q4_K, Type::Q5_K, Type::Q6_K, Type::Q8_0, Type::IQ4_NL,
                       Type::Q5_0,   Type::Q5_1, Type::Q4_0, Type::F16,  Type::BF16, Type::F32};

bool is_quantized(Type t) {
  return t != Type::F16 && t != Type::BF16 && t != Type::F32;
}

const bool registered = [] {
  benchmark::RegisterBenchmark("cuda/copy", BM_Copy)->UseManualTime()->MinTime(0.2);
  for (Type t : kTypes)
    for (const Shape& s : kShapes)
      for (int tokens : {1, 8}) {
        const std::string base = std::string("cuda/matvec/") + quant::type_name(t) + "/" + s.name +
                                 "/t" + std::to_string(tokens);
        benchmark::RegisterBenchmark((base + (is_quantized(t) ? "/int8" : "/float")).c_str(),
                                     BM_Matvec, t, s.n_in, s.n_out, tokens, is_quantized(t))
            ->UseManualTime()
            ->MinTime(0.05);
        if (is_quantized(t) && tokens == 1)
          benchmark::RegisterBenchmark((base + "/float").c_str(), BM_Matvec, t, s.n_in, s.n_out,
                                       tokens, false)
              ->UseManualTime()
              ->MinTime(0.05);
      }
  for (int64_t ctx : {4096, 32768})
    benchmark::RegisterBenchmark(("cuda/attention_decode/32B/ctx" + std::to_string(ctx)).c_str(),
                                 BM_AttentionDecode, ctx)
        ->UseManualTime()
        ->MinTime(0.05);
  for (int tokens : {1, 8, 512})
    benchmark::RegisterBenchmark(("cuda/delta_net/27B/t" + std::to_string(tokens)).c_str(),
                                 BM_DeltaNet, tokens)
        ->UseManualTime()
        ->MinTime(0.05);
  for (Type t : {Type::Q4_K, Type::IQ4_XS})
    for (int tokens : {16, 32, 64, 512}) {
      const std::string base = std::string("cuda/prompt/") + quant::type_name(t) + "/32B.ffn_up/t" +
                               std::to_string(tokens);
      benchmark::RegisterBenchmark((base + "/gemm").c_str(), BM_PromptMatmul, t, int64_t(5120),
                                   int64_t(27648), tokens, false)
          ->UseManualTime()
          ->MinTime(0.05);
      if (tokens <= 32)
        benchmark::RegisterBenchmark((base + "/matvec8").c_str(), BM_PromptMatmul, t, int64_t(5120),
                                     int64_t(27648), tokens, true)
            ->UseManualTime()
            ->MinTime(0.05);
    }
  return true;
}();

}  // namespace

#endif  // STRAW_HAVE_CUDA
