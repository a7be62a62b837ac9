// The gated delta rule on the CPU (ops::DeltaNetParams): two forms of the same math, per value
// head, as tables of functions per instruction-set level.
//
// State layout (ops::DeltaNetParams::state): per value head an S x S block, row i (key
// dimension) holding S[i][0..S) (value dimension) contiguously, so that every loop runs along a
// row with one scalar of k or q broadcast: the kernels vectorize over the value dimension and need
// no horizontal sums.
//
// - recurrent: the token loop, one pass over the state per token (the update of token t fused with
//   the readout sums of token t+1). O(S^2) per token. The SIMD levels keep a block of columns of
//   the state in L1 and its sums in registers across the whole batch.
// - chunked: the chunked parallel (WY) form over chunks of kDeltaNetChunk tokens. Within a chunk,
//   with G the cumulative sum of g (so G[a] - G[b] <= 0 for a >= b), e = exp(G):
//     A[a][b] = beta_a e^(G_a - G_b) k_a.k_b  (b < a),   (I + A) U = diag(beta) V,
//     (I + A) W = diag(beta e) K,   D = U - W S0             (the chunk's deltas d_a as rows)
//     O[a] = scale (e_a S0^T q_a + sum_{b<=a} e^(G_a - G_b) (q_a.k_b) D[b])
//     S1 = e_{n-1} S0 + sum_b e^(G_{n-1} - G_b) k_b D[b]^T
//   Every exponent is <= 0, so nothing overflows. Its heavy parts are matrix products (chunk x S
//   by S x S) instead of a dependent chain of rank-1 updates: the form for a GPU's matrix units.
//   On the CPU it does as much arithmetic per token as the token loop (3 C S^2 + 2.5 C^2 S
//   multiply-adds per chunk against 4 C S^2) and is written in plain C++, measured 2-5x slower
//   than the SIMD token loop (docs/benchmarks.md): the CPU backend runs the token loop for every
//   batch, and the chunked form is kept, tested equal to it, as the reference for other backends.
#pragma once

#include <cstddef>

#include "cpu/cpu_features.h"
#include "ops/backend.h"

namespace straw::cpu {

inline constexpr int kDeltaNetChunk = 64;

struct DeltaNetKernels {
  // Every token of p for value head h, updating its state; scratch: delta_net_scratch_floats.
  void (*recurrent)(const ops::DeltaNetParams& p, int h, float* scratch);
  void (*chunked)(const ops::DeltaNetParams& p, int h, float* scratch);
};

// Per-thread scratch floats either form needs for head size S.
inline size_t delta_net_scratch_floats(int S) {
  const size_t C = kDeltaNetChunk;
  return 4 * C + 2 * C * C + 3 * C * size_t(S) + 8 * size_t(S) + 64;
}

// The reference (baseline x86-64 build of the plain C++: the definition the other levels are tested
// against) and the AVX2 / AVX-512 levels (hand-vectorized token loop, the chunked form built for
// the level).
extern const DeltaNetKernels kDeltaNetRef;
extern const DeltaNetKernels kDeltaNetAvx2;
extern const DeltaNetKernels kDeltaNetAvx512;

const DeltaNetKernels& delta_net_kernels(Isa isa);

}  // namespace straw::cpu
