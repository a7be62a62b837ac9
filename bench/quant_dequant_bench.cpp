// Dequantization throughput per format (the scalar reference, quant::dequantize_row), on a row of a
// Qwen2.5-32B FFN width: GB/s of quantized input read and elements/s produced.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "quant/quant.h"
#include "quant/types.h"

namespace {

using straw::quant::Type;

void BM_Dequantize(benchmark::State& state, Type type) {
  const int64_t n = 27648;  // Qwen2.5-32B n_ff: a multiple of every block size
  std::vector<float> src(static_cast<size_t>(n)), dst(static_cast<size_t>(n));
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  for (float& x : src) x = dist(rng);
  std::vector<uint8_t> q(straw::quant::row_bytes(type, n));
  straw::quant::quantize_row(type, src.data(), q.data(), n);
  for (auto _ : state) {
    straw::quant::dequantize_row(type, q.data(), dst.data(), n);
    benchmark::DoNotOptimize(dst.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(q.size()));
  state.counters["elem/s"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

#define STRAW_DEQUANT_BENCH(T) BENCHMARK_CAPTURE(BM_Dequantize, T, Type::T)
STRAW_DEQUANT_BENCH(F16);
STRAW_DEQUANT_BENCH(BF16);
STRAW_DEQUANT_BENCH(Q4_0);
STRAW_DEQUANT_BENCH(Q5_0);
STRAW_DEQUANT_BENCH(Q5_1);
STRAW_DEQUANT_BENCH(Q8_0);
STRAW_DEQUANT_BENCH(Q4_K);
STRAW_DEQUANT_BENCH(Q5_K);
STRAW_DEQUANT_BENCH(Q6_K);
STRAW_DEQUANT_BENCH(IQ4_NL);
STRAW_DEQUANT_BENCH(IQ4_XS);

}  // namespace
