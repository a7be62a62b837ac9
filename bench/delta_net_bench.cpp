// The gated delta rule's two CPU forms on Qwen3.5-4B's linear-attention sizes (16 key heads, 32
// value heads of 128), one thread, one layer:
//
//   BM_DeltaNet/form/tokens   form 0: token loop, 1: chunked (WY) form
//       items_per_second: tokens; FLOP/s: 8 S^2 per token and value head (the token loop's four
//       passes over the state: decay, S^T k, update, S^T q, as multiply-adds)
//
// STRAW_BENCH_ISA=avx2 (or scalar, avx-vnni) takes a lower level's kernels than the CPU's best.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "cpu/delta_net.h"

namespace {

namespace cpu = straw::cpu;
namespace ops = straw::ops;

const cpu::DeltaNetKernels& kernels() {
  cpu::Isa isa = cpu::best_isa();
  if (const char* env = std::getenv("STRAW_BENCH_ISA"))
    for (cpu::Isa i : {cpu::Isa::Scalar, cpu::Isa::Avx2, cpu::Isa::AvxVnni, cpu::Isa::Avx512,
                     cpu::Isa::Amx})
      if (std::string(env) == cpu::isa_name(i)) isa = i;
  return cpu::delta_net_kernels(isa);
}

void BM_DeltaNet(benchmark::State& state) {
  const bool chunked = state.range(0) != 0;
  const int T = int(state.range(1)), S = 128, Hk = 16, Hv = 32;
  const int64_t stride = 2 * int64_t(Hk) * S + int64_t(Hv) * S;  // the conv output's rows
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 0.09f);  // about unit-norm heads of 128
  std::vector<float> x(size_t(T) * stride), g(size_t(T) * Hv, -0.2f), beta(size_t(T) * Hv, 0.5f);
  for (float& v : x) v = nd(rng);
  std::vector<float> st(size_t(Hv) * S * S), out(size_t(T) * Hv * S);
  std::vector<float> scratch(cpu::delta_net_scratch_floats(S));
  ops::DeltaNetParams p;
  p.n_tokens = T;
  p.n_k_heads = Hk;
  p.n_v_heads = Hv;
  p.head_dim = S;
  p.q = x.data();
  p.k = x.data() + Hk * S;
  p.qk_stride = stride;
  p.v = x.data() + 2 * Hk * S;
  p.v_stride = stride;
  p.g = g.data();
  p.beta = beta.data();
  p.state = st.data();
  p.out = out.data();
  p.scale = 0.0884f;
  const cpu::DeltaNetKernels& k = kernels();
  for (auto _ : state)
    for (int h = 0; h < Hv; ++h) (chunked ? k.chunked : k.recurrent)(p, h, scratch.data());
  state.SetItemsProcessed(int64_t(state.iterations()) * T);
  state.counters["FLOP/s"] = benchmark::Counter(8.0 * S * S * Hv * T * double(state.iterations()),
                                                benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DeltaNet)->ArgsProduct({{0, 1}, {1, 64, 512}});

}  // namespace
