// The delta-rule kernels (cpu/delta_net.h), written once in plain C++ whose inner loops run along
// contiguous rows, and compiled once per instruction-set level: delta_net.cpp (baseline x86-64,
// the reference), delta_net_avx2.cpp, delta_net_avx512.cpp. Everything here has internal linkage,
// so each build keeps its own code. Include only from those files.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu/delta_net.h"

namespace straw::cpu {
namespace {

// Dot product with 16 independent partial sums: vectorizes without -ffast-math.
inline float dn_dot(const float* __restrict a, const float* __restrict b, int n) {
  constexpr int kLanes = 16;
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

// y[j] += a * x[j]
inline void dn_axpy(float* __restrict y, float a, const float* __restrict x, int n) {
  for (int j = 0; j < n; ++j) y[j] += a * x[j];
}

struct DnHead {
  int S, H, h, kh;
  float* st;    // [S][S] this head's state
  float* snap;  // [S][S] where its state after token snapshot_after goes (null: nowhere)
  const float* q(const ops::DeltaNetParams& p, int t) const {
    return p.q + t * p.qk_stride + int64_t(kh) * S;
  }
  const float* k(const ops::DeltaNetParams& p, int t) const {
    return p.k + t * p.qk_stride + int64_t(kh) * S;
  }
  const float* v(const ops::DeltaNetParams& p, int t) const {
    return p.v + t * p.v_stride + int64_t(h) * S;
  }
  float* out(const ops::DeltaNetParams& p, int t) const { return p.out + (int64_t(t) * H + h) * S; }
};

DnHead dn_head(const ops::DeltaNetParams& p, int h) {
  const int S = p.head_dim;
  return {S, p.n_v_heads, h, h % p.n_k_heads, p.state + size_t(h) * S * S,
          p.snapshot ? p.snapshot + size_t(h) * S * S : nullptr};
}

// Token loop. ak / aq hold S^T k and S^T q of the current token for the state before its update;
// the pass that applies token t's update also sums them for token t + 1.
void dn_recurrent(const ops::DeltaNetParams& p, int h, float* scratch) {
  const DnHead hd = dn_head(p, h);
  const int S = hd.S;
  float* __restrict st = hd.st;
  float* ak = scratch;
  float* aq = scratch + S;
  float* nk = scratch + 2 * S;
  float* nq = scratch + 3 * S;
  float* __restrict d = scratch + 4 * S;
  std::fill(ak, ak + 2 * S, 0.0f);  // ak and aq
  {
    const float* k = hd.k(p, 0);
    const float* q = hd.q(p, 0);
    for (int i = 0; i < S; ++i) {
      const float* __restrict row = st + size_t(i) * S;
      dn_axpy(ak, k[i], row, S);
      dn_axpy(aq, q[i], row, S);
    }
  }
  for (int t = 0; t < p.n_tokens; ++t) {
    const float* k = hd.k(p, t);
    const float* q = hd.q(p, t);
    const float* v = hd.v(p, t);
    float* o = hd.out(p, t);
    const float eg = std::exp(p.g[int64_t(t) * hd.H + h]);
    const float b = p.beta[int64_t(t) * hd.H + h];
    const float kq = dn_dot(k, q, S);
    // d = beta (v - e^g S^T k);  o = scale (e^g S^T q + (k.q) d)   (S before the update)
    for (int j = 0; j < S; ++j) {
      d[j] = b * (v[j] - eg * ak[j]);
      o[j] = p.scale * (eg * aq[j] + kq * d[j]);
    }
    // S = e^g S + k d^T
    if (t + 1 < p.n_tokens) {
      const float* k1 = hd.k(p, t + 1);
      const float* q1 = hd.q(p, t + 1);
      float* __restrict sk = nk;
      float* __restrict sq = nq;
      std::fill(sk, sk + S, 0.0f);
      std::fill(sq, sq + S, 0.0f);
      for (int i = 0; i < S; ++i) {
        float* __restrict row = st + size_t(i) * S;
        const float ki = k[i], k1i = k1[i], q1i = q1[i];
        for (int j = 0; j < S; ++j) {
          const float r = row[j] * eg + ki * d[j];
          row[j] = r;
          sk[j] += r * k1i;
          sq[j] += r * q1i;
        }
      }
      std::swap(ak, nk);
      std::swap(aq, nq);
    } else {
      for (int i = 0; i < S; ++i) {
        float* __restrict row = st + size_t(i) * S;
        const float ki = k[i];
        for (int j = 0; j < S; ++j) row[j] = row[j] * eg + ki * d[j];
      }
    }
    if (hd.snap && t == p.snapshot_after) std::copy(st, st + size_t(S) * S, hd.snap);
  }
}

// The token loop hand-vectorized for a SIMD level V (a traits struct: `reg`, `kWidth` floats,
// zero / set1 / load / store / mul / fmadd). The value dimension is cut into column blocks of
// NV registers; a block of the state (S rows x NV * kWidth columns: 32 KB for S = 128 and 64
// columns) stays in L1 across all the tokens of the batch, and its S^T k, S^T q and delta stay in
// registers: per row of the block, one load, one store and 4 * NV multiply-adds.
template <class V, int NV>
void dn_recurrent_block(const ops::DeltaNetParams& p, const DnHead& hd, int j0) {
  using R = typename V::reg;
  const int S = hd.S;
  float* __restrict st = hd.st + j0;
  R ak[NV], aq[NV], d[NV];
  for (int v = 0; v < NV; ++v) ak[v] = aq[v] = V::zero();
  {
    const float* k = hd.k(p, 0);
    const float* q = hd.q(p, 0);
    for (int i = 0; i < S; ++i) {
      const R kb = V::set1(k[i]), qb = V::set1(q[i]);
      for (int v = 0; v < NV; ++v) {
        const R x = V::load(st + size_t(i) * S + v * V::kWidth);
        ak[v] = V::fmadd(kb, x, ak[v]);
        aq[v] = V::fmadd(qb, x, aq[v]);
      }
    }
  }
  for (int t = 0; t < p.n_tokens; ++t) {
    const float* k = hd.k(p, t);
    const float* vv = hd.v(p, t) + j0;
    float* o = hd.out(p, t) + j0;
    const float eg = std::exp(p.g[int64_t(t) * hd.H + hd.h]);
    const R egv = V::set1(eg), bv = V::set1(p.beta[int64_t(t) * hd.H + hd.h]);
    const R kqv = V::set1(dn_dot(k, hd.q(p, t), S)), sc = V::set1(p.scale);
    for (int v = 0; v < NV; ++v) {
      // d = beta (v - e^g S^T k);  o = scale (e^g S^T q + (k.q) d)
      d[v] = V::mul(bv, V::fmadd(V::set1(-eg), ak[v], V::load(vv + v * V::kWidth)));
      V::store(o + v * V::kWidth, V::mul(sc, V::fmadd(kqv, d[v], V::mul(egv, aq[v]))));
    }
    if (t + 1 < p.n_tokens) {
      // S = e^g S + k d^T, and the sums of token t + 1 over the new rows
      const float* k1 = hd.k(p, t + 1);
      const float* q1 = hd.q(p, t + 1);
      for (int v = 0; v < NV; ++v) ak[v] = aq[v] = V::zero();
      for (int i = 0; i < S; ++i) {
        const R kb = V::set1(k[i]), k1b = V::set1(k1[i]), q1b = V::set1(q1[i]);
        float* row = st + size_t(i) * S;
        for (int v = 0; v < NV; ++v) {
          const R x = V::fmadd(kb, d[v], V::mul(egv, V::load(row + v * V::kWidth)));
          V::store(row + v * V::kWidth, x);
          ak[v] = V::fmadd(k1b, x, ak[v]);
          aq[v] = V::fmadd(q1b, x, aq[v]);
        }
      }
    } else {
      for (int i = 0; i < S; ++i) {
        const R kb = V::set1(k[i]);
        float* row = st + size_t(i) * S;
        for (int v = 0; v < NV; ++v)
          V::store(row + v * V::kWidth,
                   V::fmadd(kb, d[v], V::mul(egv, V::load(row + v * V::kWidth))));
      }
    }
    if (hd.snap && t == p.snapshot_after)
      for (int i = 0; i < S; ++i)
        std::copy_n(st + size_t(i) * S, NV * V::kWidth, hd.snap + j0 + size_t(i) * S);
  }
}

// Every column block of one head: blocks of 4 registers, then 2, then 1; a head size that is not
// a multiple of the register width takes the plain loop.
template <class V>
void dn_recurrent_simd(const ops::DeltaNetParams& p, int h, float* scratch) {
  const DnHead hd = dn_head(p, h);
  if (hd.S % V::kWidth != 0) return dn_recurrent(p, h, scratch);
  int j = 0;
  for (; j + 4 * V::kWidth <= hd.S; j += 4 * V::kWidth) dn_recurrent_block<V, 4>(p, hd, j);
  for (; j + 2 * V::kWidth <= hd.S; j += 2 * V::kWidth) dn_recurrent_block<V, 2>(p, hd, j);
  for (; j < hd.S; j += V::kWidth) dn_recurrent_block<V, 1>(p, hd, j);
}

// Chunked (WY) form; the math is in cpu/delta_net.h.
void dn_chunked(const ops::DeltaNetParams& p, int h, float* scratch) {
  const DnHead hd = dn_head(p, h);
  const int S = hd.S, C = kDeltaNetChunk;
  float* __restrict st = hd.st;
  float* G = scratch;             // [C] cumulative log decay
  float* e = G + C;               // [C] e^G
  float* beta = e + C;            // [C]
  float* last = beta + C;         // [C] e^(G_{n-1} - G_b)
  float* A = last + C;            // [C][C] strictly lower: beta_a e^(G_a-G_b) k_a.k_b
  float* P = A + size_t(C) * C;   // [C][C] lower with diagonal: e^(G_a-G_b) q_a.k_b
  float* U = P + size_t(C) * C;   // [C][S] U, then D
  float* W = U + size_t(C) * S;   // [C][S] W, then S0^T q_a
  float* Kt = W + size_t(C) * S;  // [C][S] e^(G_{n-1}-G_b) k_b, for the state update
  for (int c0 = 0; c0 < p.n_tokens; c0 += C) {
    const int n = std::min(C, p.n_tokens - c0);
    float acc = 0;
    for (int a = 0; a < n; ++a) {
      acc += p.g[int64_t(c0 + a) * hd.H + h];
      G[a] = acc;
      e[a] = std::exp(acc);
      beta[a] = p.beta[int64_t(c0 + a) * hd.H + h];
    }
    for (int a = 0; a < n; ++a) last[a] = std::exp(G[n - 1] - G[a]);
    for (int a = 0; a < n; ++a) {
      const float* ka = hd.k(p, c0 + a);
      const float* qa = hd.q(p, c0 + a);
      for (int b = 0; b <= a; ++b) {
        const float* kb = hd.k(p, c0 + b);
        const float decay = std::exp(G[a] - G[b]);
        if (b < a) A[a * C + b] = beta[a] * decay * dn_dot(ka, kb, S);
        P[a * C + b] = decay * dn_dot(qa, kb, S);
      }
    }
    // Forward substitution: (I + A) U = diag(beta) V and (I + A) W = diag(beta e) K, row by row.
    for (int a = 0; a < n; ++a) {
      float* __restrict u = U + size_t(a) * S;
      float* __restrict w = W + size_t(a) * S;
      const float* va = hd.v(p, c0 + a);
      const float* ka = hd.k(p, c0 + a);
      const float be = beta[a] * e[a];
      for (int j = 0; j < S; ++j) {
        u[j] = beta[a] * va[j];
        w[j] = be * ka[j];
      }
      for (int b = 0; b < a; ++b) {
        dn_axpy(u, -A[a * C + b], U + size_t(b) * S, S);
        dn_axpy(w, -A[a * C + b], W + size_t(b) * S, S);
      }
    }
    // D = U - W S0 (into U), then W's rows become S0^T q_a.
    for (int i = 0; i < S; ++i) {
      const float* __restrict row = st + size_t(i) * S;
      for (int a = 0; a < n; ++a) dn_axpy(U + size_t(a) * S, -W[size_t(a) * S + i], row, S);
    }
    std::fill(W, W + size_t(n) * S, 0.0f);
    for (int i = 0; i < S; ++i) {
      const float* __restrict row = st + size_t(i) * S;
      for (int a = 0; a < n; ++a) dn_axpy(W + size_t(a) * S, hd.q(p, c0 + a)[i], row, S);
    }
    // O[a] = scale (e_a S0^T q_a + sum_{b<=a} P[a][b] D[b])
    for (int a = 0; a < n; ++a) {
      float* __restrict o = hd.out(p, c0 + a);
      const float* qs = W + size_t(a) * S;
      for (int j = 0; j < S; ++j) o[j] = e[a] * qs[j];
      for (int b = 0; b <= a; ++b) dn_axpy(o, P[a * C + b], U + size_t(b) * S, S);
      for (int j = 0; j < S; ++j) o[j] *= p.scale;
    }
    // The snapshot inside this chunk: S_a = e_a S0 + sum_{b<=a} e^(G_a - G_b) k_b D[b]^T
    if (hd.snap && p.snapshot_after >= c0 && p.snapshot_after < c0 + n) {
      const int a = p.snapshot_after - c0;
      for (int i = 0; i < S; ++i) {
        float* __restrict row = hd.snap + size_t(i) * S;
        const float* __restrict s0 = st + size_t(i) * S;
        for (int j = 0; j < S; ++j) row[j] = e[a] * s0[j];
        for (int b = 0; b <= a; ++b)
          dn_axpy(row, std::exp(G[a] - G[b]) * hd.k(p, c0 + b)[i], U + size_t(b) * S, S);
      }
    }
    // S1 = e_{n-1} S0 + sum_b e^(G_{n-1} - G_b) k_b D[b]^T
    for (int b = 0; b < n; ++b) {
      const float* kb = hd.k(p, c0 + b);
      for (int i = 0; i < S; ++i) Kt[size_t(b) * S + i] = last[b] * kb[i];
    }
    const float en = e[n - 1];
    for (int i = 0; i < S; ++i) {
      float* __restrict row = st + size_t(i) * S;
      for (int j = 0; j < S; ++j) row[j] *= en;
      for (int b = 0; b < n; ++b) dn_axpy(row, Kt[size_t(b) * S + i], U + size_t(b) * S, S);
    }
  }
}

}  // namespace
}  // namespace straw::cpu
