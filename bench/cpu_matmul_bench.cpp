// CPU matmul microbenchmarks: matvec (decode) and small-batch / prefill GEMM per weight type on
// Qwen2.5 layer shapes, through CpuBackend (repacked weights, the thread pool), with the machine's
// read bandwidth measured the same way for the roofline. See bench/README.md.
//
//   BM_ReadBandwidth/threads            GB/s of a streaming read of 1 GiB (the roofline)
//   BM_Matmul/type/n_in/n_out/tokens/threads
//       bytes_per_second: weight bytes streamed per second (matvec: compare with the roofline)
//       MAC/s: multiply-accumulates per second (GEMM)
//   BM_MatmulInPlace/...   the same with the weights left in the file layout (RAM short)
// STRAW_BENCH_ISA=avx2 benchmarks the AVX2 kernels on an AVX-512 machine.
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cpu/cpu_backend.h"
#include "quant/f16.h"
#include "quant/types.h"

namespace {

using straw::quant::Type;
namespace cpu = straw::cpu;

// Random blocks with fp16 scales in a sane range (the speed does not depend on the values).
std::vector<uint8_t> random_weight(Type t, int64_t rows, int64_t n_in) {
  const size_t rb = straw::quant::row_bytes(t, n_in);
  std::vector<uint8_t> w(rb * rows);
  std::mt19937 rng(1);
  for (size_t i = 0; i < w.size(); i += 4) {
    const uint32_t v = rng();
    std::memcpy(&w[i], &v, std::min<size_t>(4, w.size() - i));
  }
  const size_t bb = straw::quant::type_info(t).type_size;
  const int block = straw::quant::type_info(t).block_size;
  std::vector<size_t> halves;
  if (block == 1) {
    for (size_t i = 0; i + bb <= w.size(); i += bb) {
      const float f = float(int(rng() % 2001) - 1000) * 1e-3f;
      if (t == Type::F32)
        std::memcpy(&w[i], &f, 4);
      else {
        const uint16_t h =
            t == Type::F16 ? straw::quant::fp32_to_fp16(f) : straw::quant::fp32_to_bf16(f);
        std::memcpy(&w[i], &h, 2);
      }
    }
    return w;
  }
  if (t == Type::Q5_1 || t == Type::Q4_K || t == Type::Q5_K)
    halves = {0, 2};
  else if (t == Type::Q6_K)
    halves = {208};
  else
    halves = {0};
  for (size_t off = 0; off + bb <= w.size(); off += bb)
    for (size_t h : halves) {
      const uint16_t v = straw::quant::fp32_to_fp16(float(int(rng() % 200) - 100) * 1e-4f);
      std::memcpy(&w[off + h], &v, 2);
    }
  return w;
}

// STRAW_BENCH_ISA=avx2 (or scalar, avx-vnni) runs the benchmarks on a lower ISA level than the
// CPU's best.
std::optional<cpu::Isa> bench_isa() {
  const char* env = std::getenv("STRAW_BENCH_ISA");
  if (!env) return std::nullopt;
  for (cpu::Isa i :
       {cpu::Isa::Scalar, cpu::Isa::Avx2, cpu::Isa::AvxVnni, cpu::Isa::Avx512, cpu::Isa::Amx})
    if (std::string(env) == cpu::isa_name(i)) return i;
  return std::nullopt;
}

void matmul_bench(benchmark::State& state, Type type, bool in_place) {
  const int64_t n_in = state.range(0);
  // n_out 0: as many rows as fill 1 GiB.
  const int64_t n_out =
      state.range(1) ? state.range(1)
                     : int64_t(1 << 30) / int64_t(straw::quant::row_bytes(type, n_in)) / 16 * 16;
  const int n_tok = int(state.range(2)), threads = int(state.range(3));
  const std::vector<uint8_t> raw = random_weight(type, n_out, n_in);
  cpu::CpuOptions options{.n_threads = threads, .isa = bench_isa()};
  if (in_place) options.memory_budget = 1;  // as when RAM is short: tiles repacked on the fly
  cpu::CpuBackend be(options);
  straw::ops::Weight view{type, n_in, n_out, straw::quant::row_bytes(type, n_in), raw.data(), 0};
  const straw::ops::Weight w = be.prepare_weight(view);
  const size_t bytes = be.prepare_status().copied_bytes ? be.prepare_status().copied_bytes
                                                        : size_t(n_out) * view.row_bytes;
  std::vector<float> x(size_t(n_tok) * n_in), y(size_t(n_tok) * n_out);
  std::mt19937 rng(2);
  std::normal_distribution<float> dist;
  for (float& v : x) v = dist(rng);
  be.matmul(w, x.data(), y.data(), n_tok);  // warm up (pages, caches, worker spin)
  for (auto _ : state) {
    be.matmul(w, x.data(), y.data(), n_tok);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
  state.counters["MAC/s"] = benchmark::Counter(double(n_in) * double(n_out) * n_tok,
                                               benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(cpu::isa_name(be.isa())) + (in_place ? " in place" : ""));
}

// Matvecs over distinct copies of one weight, 1 GiB in all, one after another as in decode: the
// kernel's rate from memory with the cost of each call (the region's start and end, the reads'
// ramp) included; against the one large matvec of matvec_memory_args, what a call costs.
void BM_MatvecCalls(benchmark::State& state, Type type) {
  const int64_t n_in = state.range(0), n_out = state.range(1);
  const int threads = int(state.range(2));
  const std::vector<uint8_t> raw = random_weight(type, n_out, n_in);
  cpu::CpuBackend be(cpu::CpuOptions{.n_threads = threads, .isa = bench_isa()});
  straw::ops::Weight view{type, n_in, n_out, straw::quant::row_bytes(type, n_in), raw.data(), 0};
  const size_t bytes = size_t(n_out) * view.row_bytes;
  std::vector<straw::ops::Weight> ws;
  for (size_t total = 0; total < (size_t(1) << 30); total += bytes)
    ws.push_back(be.prepare_weight(view));
  std::vector<float> x(size_t(n_in), 0.5f), y(static_cast<size_t>(n_out));
  for (const auto& w : ws) be.matmul(w, x.data(), y.data(), 1);
  for (auto _ : state) {
    for (const auto& w : ws) be.matmul(w, x.data(), y.data(), 1);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes * ws.size()));
  state.counters["s/call"] =
      benchmark::Counter(double(ws.size()), benchmark::Counter::kIsIterationInvariantRate |
                                                benchmark::Counter::kInvert);
}
BENCHMARK_CAPTURE(BM_MatvecCalls, IQ4_XS, Type::IQ4_XS)
    ->Args({1536, 8960, 2})
    ->Args({8960, 1536, 2})
    ->Args({1536, 1536, 2})
    ->Args({1536, 256, 2})
    ->Args({3584, 18944, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_Matmul(benchmark::State& state, Type type) {
  matmul_bench(state, type, false);
}
void BM_MatmulInPlace(benchmark::State& state, Type type) {
  matmul_bench(state, type, true);
}

// Qwen2.5 shapes {n_in, n_out}: 32B FFN up / down, 7B FFN up / down, 1.5B FFN up, 1.5B LM head.
const std::vector<std::vector<int64_t>> kMatvecShapes = {
    {5120, 27648}, {27648, 5120}, {3584, 18944}, {18944, 3584}, {1536, 8960}, {1536, 151936}};

void matvec_args(benchmark::internal::Benchmark* b) {
  for (const auto& s : kMatvecShapes)
    for (int threads : {1, 2}) b->Args({s[0], s[1], 1, threads});
  for (int tok : {2, 4, 8}) b->Args({3584, 18944, tok, 2});
  // Small enough (0.2-1.6 MiB) to stay in one core's L2: the kernel's decode rate without memory
  // stalls, the ceiling a streaming matvec can reach per core; and for 2-9 tokens (speculative
  // verification: 5 is a 1+4 step, 9 a 1+8 one).
  for (int tok : {1, 2, 4, 5, 8, 9}) b->Args({1536, 512, tok, 1});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

// One matvec over 1 GiB of weights (4096 x 262144 rows at 8 bits, more rows at fewer bits): far
// larger than any last-level cache (this Xeon's is 480 MB, which holds every shape above), so
// bytes_per_second is the kernel's streaming rate from memory, to compare with BM_ReadBandwidth;
// and 5 tokens (a 1+4 speculative verification) at 2 threads.
void matvec_memory_args(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) b->Args({4096, 0, 1, threads});
  b->Args({4096, 0, 5, 2});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

void gemm_args(benchmark::internal::Benchmark* b) {
  for (int tok : {64, 512}) {
    b->Args({1536, 8960, tok, 2});
    b->Args({8960, 1536, tok, 2});
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

#define STRAW_MATMUL_BENCH(T)                                            \
  BENCHMARK_CAPTURE(BM_Matmul, T##_matvec, Type::T)->Apply(matvec_args); \
  BENCHMARK_CAPTURE(BM_Matmul, T##_gemm, Type::T)->Apply(gemm_args);

STRAW_MATMUL_BENCH(IQ4_XS)
BENCHMARK_CAPTURE(BM_Matmul, IQ4_XS_matvec_memory, Type::IQ4_XS)->Apply(matvec_memory_args);
BENCHMARK_CAPTURE(BM_Matmul, Q4_K_matvec_memory, Type::Q4_K)->Apply(matvec_memory_args);
BENCHMARK_CAPTURE(BM_Matmul, Q6_K_matvec_memory, Type::Q6_K)->Apply(matvec_memory_args);
BENCHMARK_CAPTURE(BM_Matmul, Q8_0_matvec_memory, Type::Q8_0)->Apply(matvec_memory_args);
STRAW_MATMUL_BENCH(Q4_K)
STRAW_MATMUL_BENCH(Q5_K)
STRAW_MATMUL_BENCH(Q6_K)
STRAW_MATMUL_BENCH(Q8_0)
STRAW_MATMUL_BENCH(IQ4_NL)
STRAW_MATMUL_BENCH(Q4_0)
STRAW_MATMUL_BENCH(Q5_0)
STRAW_MATMUL_BENCH(Q5_1)
STRAW_MATMUL_BENCH(F16)
STRAW_MATMUL_BENCH(BF16)
STRAW_MATMUL_BENCH(F32)

BENCHMARK_CAPTURE(BM_MatmulInPlace, IQ4_XS_matvec, Type::IQ4_XS)
    ->Args({3584, 18944, 1, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_MatmulInPlace, F16_matvec, Type::F16)
    ->Args({3584, 18944, 1, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The read bandwidth of this machine, as the decode roofline: each thread streams its half of a
// 1 GiB buffer (huge pages) with 256-bit loads (AVX2 is on every machine the fast kernels run on)
// and the same software prefetch as the kernels, which one core needs to reach memory speed.
__attribute__((target("avx2"))) uint64_t stream_sum(const uint8_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 128 <= n; i += 128) {
    _mm_prefetch(reinterpret_cast<const char*>(p + i + 8192), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + i + 8192 + 64), _MM_HINT_T0);
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  return uint64_t(_mm256_extract_epi64(s, 0) ^ _mm256_extract_epi64(s, 3));
}

void BM_ReadBandwidth(benchmark::State& state) {
  const size_t bytes = size_t(1) << 30;
  const int threads = int(state.range(0));
  auto* buf = static_cast<uint8_t*>(std::aligned_alloc(2 << 20, bytes));
  madvise(buf, bytes, MADV_HUGEPAGE);
  cpu::ThreadPool pool(threads);
  pool.parallel_for(int64_t(bytes >> 20), 16, [&](int64_t b, int64_t e, int) {
    std::memset(buf + (b << 20), 1, size_t(e - b) << 20);
  });
  std::atomic<uint64_t> sink{0};
  for (auto _ : state) {
    pool.run([&](int t, int n) {
      const size_t lo = bytes / n * t, hi = bytes / n * (t + 1);
      sink.fetch_xor(stream_sum(buf + lo, hi - lo));
    });
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
  std::free(buf);
}
BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
