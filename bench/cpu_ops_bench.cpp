// CPU element-wise and attention microbenchmarks through CpuBackend, on Qwen2.5-1.5B / 7B sizes.
//
//   BM_Rmsnorm/rows/width, BM_Rope/tokens/heads, BM_Swiglu/n     bytes_per_second: activations
//   BM_Attention/tokens/pos0/heads/kv_heads/threads              bytes_per_second: KV cache read;
//       FLOP/s: 2 (q.k) + 2 (p.v) flops per visible key, head and dimension
//   BM_AttentionKv/tokens/pos0/heads/kv_heads/threads/kv_type    the same with K and V of one type
//       (0 f32, 1 f16, 2 q8_0, 3 q4_0), at depth
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu/cpu_backend.h"

namespace {

namespace cpu = straw::cpu;
namespace ops = straw::ops;

// STRAW_BENCH_ISA=avx2 (or scalar, avx-vnni) runs the benchmarks on a lower ISA level than the
// CPU's best.
cpu::CpuOptions options(int threads) {
  cpu::CpuOptions o{.n_threads = threads};
  if (const char* env = std::getenv("STRAW_BENCH_ISA"))
    for (cpu::Isa i : {cpu::Isa::Scalar, cpu::Isa::Avx2, cpu::Isa::AvxVnni, cpu::Isa::Avx512,
                     cpu::Isa::Amx})
      if (std::string(env) == cpu::isa_name(i)) o.isa = i;
  return o;
}

std::vector<float> random_floats(size_t n) {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

void BM_Rmsnorm(benchmark::State& state) {
  const int64_t rows = state.range(0), width = state.range(1);
  cpu::CpuBackend be(options(2));
  std::vector<float> x = random_floats(rows * width), g = random_floats(width), y(x.size());
  ops::Weight w{straw::quant::Type::F32, width, 1, size_t(width) * 4, g.data(), 0};
  for (auto _ : state) be.rmsnorm(x.data(), w, y.data(), rows, width, 1e-6f);
  state.SetBytesProcessed(int64_t(state.iterations()) * rows * width * 8);
}
BENCHMARK(BM_Rmsnorm)->Args({1, 1536})->Args({512, 1536})->Args({1, 3584})->UseRealTime();

void BM_Rope(benchmark::State& state) {
  const int tokens = int(state.range(0)), heads = int(state.range(1));
  cpu::CpuBackend be(options(2));
  std::vector<float> x = random_floats(size_t(tokens) * heads * 128);
  ops::RopeParams p{ops::RopeMode::Neox, 128, 1e6f, 1.0f, nullptr};
  int64_t pos = 0;
  for (auto _ : state) {
    // A new position each time, as in decode (the first layer computes the table).
    be.rope(x.data(), tokens, heads, 128, pos++, p);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(x.size()) * 8);
}
BENCHMARK(BM_Rope)->Args({1, 12})->Args({512, 12})->UseRealTime();

void BM_Swiglu(benchmark::State& state) {
  const int64_t n = state.range(0);
  cpu::CpuBackend be(options(2));
  std::vector<float> g = random_floats(n), u = random_floats(n);
  for (auto _ : state) be.swiglu(g.data(), u.data(), g.data(), n);
  state.SetBytesProcessed(int64_t(state.iterations()) * n * 12);
}
BENCHMARK(BM_Swiglu)->Arg(8960)->Arg(18944)->Arg(512 * 8960)->UseRealTime();

// Attention of `tokens` queries at position pos0 over a cache of `type` rows; with `layers` > 1
// the calls rotate over that many caches (as decode goes through the layers), so that a cache
// bigger than L3 in all is read from memory, as in a real decode step, not from L3.
void attention_bench(benchmark::State& state, ops::KvType type, int layers = 1) {
  const int tokens = int(state.range(0));
  const int64_t pos0 = state.range(1);
  const int heads = int(state.range(2)), kv_heads = int(state.range(3));
  const int threads = int(state.range(4)), dim = 128;
  state.SetLabel(ops::kv_type_name(type));
  cpu::CpuBackend be(options(threads));
  const int64_t n_ctx = pos0 + tokens, width = int64_t(kv_heads) * dim;
  const size_t row = ops::kv_row_bytes(type, width);
  std::vector<std::unique_ptr<ops::Buffer>> bufs;
  std::vector<ops::KvLayer> kv;
  const std::vector<float> k = random_floats(n_ctx * width), v = random_floats(n_ctx * width);
  for (int l = 0; l < layers; ++l) {
    bufs.push_back(be.alloc(size_t(n_ctx) * row));
    bufs.push_back(be.alloc(size_t(n_ctx) * row));
    kv.push_back({type, type, bufs[bufs.size() - 2]->data(), bufs.back()->data(), n_ctx, kv_heads});
    be.kv_store(kv.back(), k.data(), v.data(), int(n_ctx), 0, width, width);
  }
  const std::vector<float> q = random_floats(size_t(tokens) * heads * dim);
  std::vector<float> out(q.size());
  ops::AttentionParams p{tokens, pos0, heads, kv_heads, dim, dim, 1.0f / std::sqrt(float(dim))};
  size_t l = 0;
  for (auto _ : state) be.attention(q.data(), kv[l++ % kv.size()], out.data(), p);
  const double keys = double(tokens) * double(pos0) + double(tokens) * (tokens + 1) / 2.0;
  state.counters["FLOP/s"] =
      benchmark::Counter(4.0 * keys * heads * dim, benchmark::Counter::kIsIterationInvariantRate);
  state.SetBytesProcessed(int64_t(state.iterations()) * n_ctx * int64_t(row) * 2);
}
void BM_Attention(benchmark::State& state) {
  attention_bench(state, ops::KvType::F16);
}
BENCHMARK(BM_Attention)
    ->Args({1, 4095, 12, 2, 2})  // 1.5B decode at 4k context
    ->Args({1, 4095, 28, 4, 2})  // 7B decode at 4k context
    ->Args({512, 0, 12, 2, 2})   // 1.5B prefill of 512 tokens
    ->Args({512, 0, 12, 2, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_AttentionKv(benchmark::State& state) {
  attention_bench(state, static_cast<ops::KvType>(state.range(5)), int(state.range(6)));
}
// 1.5B heads (12 query, 2 KV) at depth 16384: decode, and a 512-token prompt chunk. The 1-thread
// decode's CPU time is the kernel's cost even when other work shares the cores.
// The last argument: caches rotated over (8: 34-134 MB, more than this machine's 32 MB of L3).
// One KV head of 6 (the same work per head, each row one head: a contiguous stream) shows what the
// row layout (heads side by side in a row) costs a decode that reads the cache from memory.
BENCHMARK(BM_AttentionKv)
    ->ArgsProduct({{1}, {16384}, {12}, {2}, {1, 2}, {1, 2, 3}, {1, 8}})
    ->ArgsProduct({{1}, {16384}, {6}, {1}, {1, 2}, {1, 3}, {1, 8}})
    ->ArgsProduct({{1}, {16384}, {28}, {4}, {2}, {1, 2, 3}, {8}})
    ->ArgsProduct({{512}, {16384}, {12}, {2}, {2}, {1, 2, 3}, {1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// Quantized caches from memory on a CPU with a large L3 (480 MB on an Intel Xeon VM): 128
// layers, 0.6-1.1 GB, as decode reads them among the weights.
BENCHMARK(BM_AttentionKv)
    ->ArgsProduct({{1}, {16384}, {12}, {2}, {2}, {2, 3}, {128}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
