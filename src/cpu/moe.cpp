// CPU mixture-of-experts ops: routing (softmax, top-k, renormalisation), the expert matmul and the
// weighted sum of the experts' outputs.
//
// Expert matmul. The slots (token t, choice k) of a step are grouped by expert with a counting
// sort; every active expert then runs one GEMM of its own matrix over all of its slots (decode: one
// slot per chosen expert, so only the chosen experts' rows are read; prefill: a micro-batch's
// tokens share experts, and each expert's matrix streams once for all of its tokens). The work of
// all active experts forms one parallel region: items are (expert, range of tiles) sized by the
// expert's token count, so that an expert with many tokens is split finer than one with a single
// token. Results land in slot order in moe_y_ and are scattered to [n_tokens][n_used][n_out].
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/cpu_backend.h"
#include "util/str.h"

namespace straw::cpu {

namespace {

// Work items per thread of an expert matmul (as matmul's kItemsPerThread).
constexpr int64_t kItemsPerThread = 8;

// Slots above which gathering and scattering rows run on the pool.
constexpr int64_t kParallelSlots = 64;

// One matrix of an expert tensor as a 2-D weight.
ops::Weight expert_view(const ops::Weight& w, int64_t e) {
  ops::Weight m = w;
  m.data = static_cast<const uint8_t*>(w.data) + size_t(e) * w.expert_bytes;
  m.n_expert = 1;
  return m;
}

// Work items over the active experts' matrices of `units` row units each, each item about
// total / (kItemsPerThread * threads) units x slots of work.
template <class Groups>
void make_items(Groups& g, int64_t units, int threads) {
  g.items.clear();
  int64_t total = 0;
  for (int32_t e : g.active) total += units * (g.begin[e + 1] - g.begin[e]);
  const int64_t target = std::max<int64_t>(1, total / (kItemsPerThread * threads));
  for (int32_t e : g.active) {
    const int64_t n = g.begin[e + 1] - g.begin[e];
    const int64_t chunk = std::clamp<int64_t>(target / n, 1, units);
    for (int64_t u = 0; u < units; u += chunk) g.items.push_back({e, u, std::min(units, u + chunk)});
  }
}

}  // namespace

void CpuBackend::moe_route(const float* logits, int n_tokens, int n_expert, int n_used,
                           bool normalize, float scale, int32_t* ids, float* weights) {
  if (n_used <= 0 || n_used > n_expert)
    fail("internal error: ", n_used, " experts used of ", n_expert);
  auto rows = [&](int64_t t0, int64_t t1, int thread) {
    float* p = scratch(thread, size_t(n_expert));
    for (int64_t t = t0; t < t1; ++t) {
      const float* l = logits + t * n_expert;
      // p = softmax(l): the sum in double, as ggml's soft_max accumulates it.
      float m = -INFINITY;
      for (int e = 0; e < n_expert; ++e) m = std::max(m, l[e]);
      double sum = 0;
      for (int e = 0; e < n_expert; ++e) {
        p[e] = std::exp(l[e] - m);
        sum += p[e];
      }
      const float inv = float(1.0 / sum);
      for (int e = 0; e < n_expert; ++e) p[e] *= inv;
      // The n_used largest, best first; a chosen expert is marked with -1 (probabilities are >= 0).
      int32_t* id = ids + t * n_used;
      float* w = weights + t * n_used;
      for (int k = 0; k < n_used; ++k) {
        int best = 0;
        for (int e = 1; e < n_expert; ++e)
          if (p[e] > p[best]) best = e;
        id[k] = best;
        w[k] = p[best];
        p[best] = -1.0f;
      }
      if (normalize) {
        // llama.cpp: weights / max(sum(weights), 2^-14)
        float s = 0;
        for (int k = 0; k < n_used; ++k) s += w[k];
        s = std::max(s, 6.103515625e-5f);
        for (int k = 0; k < n_used; ++k) w[k] /= s;
      }
      if (scale != 0.0f && scale != 1.0f)
        for (int k = 0; k < n_used; ++k) w[k] *= scale;
    }
  };
  if (n_tokens >= 64)
    pool_.parallel_for(n_tokens, 16, rows);
  else
    rows(0, n_tokens, 0);
}

void CpuBackend::moe_matmul(const ops::Weight& w, const float* x, bool x_per_slot,
                            const int32_t* ids, int n_tokens, int n_used, float* y) {
  const int64_t n_slots = int64_t(n_tokens) * n_used;
  if (n_slots <= 0 || w.n_out <= 0) return;
  if (w.n_expert <= 1) fail("internal error: moe_matmul on a weight that is not an expert tensor");
  // Counting sort of the slots by expert.
  const int64_t E = w.n_expert;
  moe_.begin.assign(size_t(E + 1), 0);
  for (int64_t s = 0; s < n_slots; ++s) {
    if (ids[s] < 0 || ids[s] >= E)
      fail("internal error: expert id ", ids[s], " outside 0..", E - 1);
    moe_.begin[ids[s] + 1] += 1;
  }
  moe_.active.clear();
  for (int64_t e = 0; e < E; ++e) {
    if (moe_.begin[e + 1] > 0) moe_.active.push_back(int32_t(e));
    moe_.begin[e + 1] += moe_.begin[e];
  }
  moe_.slot.resize(size_t(n_slots));
  moe_.next.assign(moe_.begin.begin(), moe_.begin.end() - 1);
  for (int64_t s = 0; s < n_slots; ++s) moe_.slot[size_t(moe_.next[ids[s]]++)] = s;
  if (moe_y_.size() < size_t(n_slots * w.n_out)) moe_y_.resize(size_t(n_slots * w.n_out));

  if (kernels_ && tiled_type(w.type))
    moe_tiled(w, x, x_per_slot, n_used);
  else if (kernels_ && float_type(w.type))
    moe_rows(w, x, x_per_slot, n_used);
  else if (w.layout != 0)
    fail("internal error: weight layout ", w.layout, " on the reference path");
  else
    moe_reference(w, x, x_per_slot, n_used);

  // y[slot] = moe_y_[i] for the slot at sorted position i
  const size_t row = size_t(w.n_out);
  auto scatter = [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i)
      std::memcpy(y + size_t(moe_.slot[i]) * row, moe_y_.data() + size_t(i) * row,
                  row * sizeof(float));
  };
  if (n_slots >= kParallelSlots)
    pool_.parallel_for(n_slots, 16, scatter);
  else
    scatter(0, n_slots, 0);
}

void CpuBackend::moe_tiled(const ops::Weight& w, const float* x, bool x_per_slot, int n_used) {
  const TileLayout L = tile_layout(w.type, w.n_in);
  const ActLayout A = act_layout(w.n_in);
  const ActParams ap = kernels_->act_params(w.type);
  const int64_t n_slots = int64_t(moe_.slot.size());
  // Activations in slot order, one record per slot: quantized straight from the slot's row of x;
  // when the slots of a token share its row (gate / up), each token is quantized once and its
  // record copied to its slots.
  const int64_t n_tok = n_slots / n_used;
  const int64_t own = x_per_slot ? 0 : n_tok;  // records quantized per token, ahead of the slots
  uint8_t* act = act_buffer(A.stride * size_t(own + n_slots));
  uint8_t* sorted = act + A.stride * size_t(own);
  auto run = [&](int64_t n, const auto& fn) {
    if (n >= 16)
      pool_.parallel_for(n, 4, fn);
    else
      fn(int64_t(0), n, 0);
  };
  if (x_per_slot) {
    run(n_slots, [&](int64_t i0, int64_t i1, int) {
      for (int64_t i = i0; i < i1; ++i)
        kernels_->quantize_act(x + moe_.slot[i] * w.n_in, w.n_in, ap, sorted + i * A.stride);
    });
  } else {
    run(n_tok, [&](int64_t t0, int64_t t1, int) {
      for (int64_t t = t0; t < t1; ++t)
        kernels_->quantize_act(x + t * w.n_in, w.n_in, ap, act + t * A.stride);
    });
    run(n_slots, [&](int64_t i0, int64_t i1, int) {
      for (int64_t i = i0; i < i1; ++i)
        std::memcpy(sorted + i * A.stride, act + (moe_.slot[i] / n_used) * A.stride, A.stride);
    });
  }

  const int64_t tiles = n_tiles(w.n_out);
  make_items(moe_, tiles, pool_.size());
  const auto* base = static_cast<const uint8_t*>(w.data);
  const bool in_place = w.layout != kLayoutTiled;  // RAM was short at load: repack on the fly
  pool_.parallel_for(int64_t(moe_.items.size()), 1, [&](int64_t j0, int64_t j1, int thread) {
    for (int64_t j = j0; j < j1; ++j) {
      const MoeGroups::Item it = moe_.items[size_t(j)];
      const int64_t s0 = moe_.begin[it.e], n = moe_.begin[it.e + 1] - s0;
      const uint8_t* a = sorted + s0 * A.stride;
      float* out = moe_y_.data() + s0 * w.n_out;
      const uint8_t* matrix = base + size_t(it.e) * w.expert_bytes;
      if (!in_place) {
        kernels_->tiled(L, matrix + it.unit0 * L.tile_bytes, it.unit1 - it.unit0,
                        w.n_out - it.unit0 * kTileRows, a, int(n), out + it.unit0 * kTileRows,
                        w.n_out);
        continue;
      }
      auto* tile = reinterpret_cast<uint8_t*>(scratch(thread, L.tile_bytes / 4 + 16));
      for (int64_t t = it.unit0; t < it.unit1; ++t) {
        const int64_t rows = std::min<int64_t>(kTileRows, w.n_out - t * kTileRows);
        repack_tile(L, matrix + t * kTileRows * w.row_bytes, w.row_bytes, int(rows), tile);
        kernels_->tiled(L, tile, 1, rows, a, int(n), out + t * kTileRows, w.n_out);
      }
    }
  });
}

void CpuBackend::moe_rows(const ops::Weight& w, const float* x, bool x_per_slot, int n_used) {
  const int64_t n_slots = int64_t(moe_.slot.size());
  // Float activations gathered in slot order.
  if (moe_x_.size() < size_t(n_slots * w.n_in)) moe_x_.resize(size_t(n_slots * w.n_in));
  auto gather = [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t src = x_per_slot ? moe_.slot[i] : moe_.slot[i] / n_used;
      std::memcpy(moe_x_.data() + i * w.n_in, x + src * w.n_in, size_t(w.n_in) * sizeof(float));
    }
  };
  if (n_slots >= kParallelSlots)
    pool_.parallel_for(n_slots, 16, gather);
  else
    gather(0, n_slots, 0);

  const size_t gb = float_group_bytes(w.type, w.n_in);
  make_items(moe_, float_groups(w.n_out), pool_.size());
  const auto* base = static_cast<const uint8_t*>(w.data);
  const bool in_place = w.layout != kLayoutFloatRows;
  pool_.parallel_for(int64_t(moe_.items.size()), 1, [&](int64_t j0, int64_t j1, int thread) {
    for (int64_t j = j0; j < j1; ++j) {
      const MoeGroups::Item it = moe_.items[size_t(j)];
      const int64_t s0 = moe_.begin[it.e], n = moe_.begin[it.e + 1] - s0;
      const float* xs = moe_x_.data() + s0 * w.n_in;
      float* out = moe_y_.data() + s0 * w.n_out;
      const uint8_t* matrix = base + size_t(it.e) * w.expert_bytes;
      const int64_t r0 = it.unit0 * kFloatRows, r1 = std::min(w.n_out, it.unit1 * kFloatRows);
      if (!in_place) {
        kernels_->rows(w.type, matrix + it.unit0 * gb, w.n_in, r1 - r0, xs, w.n_in, int(n),
                       out + r0, w.n_out);
        continue;
      }
      auto* grp = reinterpret_cast<uint8_t*>(scratch(thread, gb / 4 + 16));
      for (int64_t g = it.unit0; g < it.unit1; ++g) {
        const int64_t g0 = g * kFloatRows, rows = std::min<int64_t>(kFloatRows, w.n_out - g0);
        repack_float_group(w.type, w.n_in, matrix + g0 * w.row_bytes, w.row_bytes, int(rows), grp);
        kernels_->rows(w.type, grp, w.n_in, rows, xs, w.n_in, int(n), out + g0, w.n_out);
      }
    }
  });
}

void CpuBackend::moe_reference(const ops::Weight& w, const float* x, bool x_per_slot, int n_used) {
  // The exact dequantized math: each active expert's matrix times its gathered rows.
  const int64_t n_slots = int64_t(moe_.slot.size());
  if (moe_x_.size() < size_t(n_slots * w.n_in)) moe_x_.resize(size_t(n_slots * w.n_in));
  for (int64_t i = 0; i < n_slots; ++i) {
    const int64_t src = x_per_slot ? moe_.slot[i] : moe_.slot[i] / n_used;
    std::memcpy(moe_x_.data() + i * w.n_in, x + src * w.n_in, size_t(w.n_in) * sizeof(float));
  }
  for (int32_t e : moe_.active) {
    const int64_t s0 = moe_.begin[e], n = moe_.begin[e + 1] - s0;
    matmul_reference(expert_view(w, e), moe_x_.data() + s0 * w.n_in,
                     moe_y_.data() + s0 * w.n_out, int(n));
  }
}

void CpuBackend::moe_combine(const float* y, const float* weights, int n_tokens, int n_used,
                             int64_t width, float* out) {
  // In the order llama.cpp adds the experts: out = w_0 y_0, then out += w_k y_k.
  auto rows = [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* w = weights + t * n_used;
      const float* yt = y + t * n_used * width;
      float* o = out + t * width;
      for (int64_t i = 0; i < width; ++i) o[i] = w[0] * yt[i];
      for (int k = 1; k < n_used; ++k)
        for (int64_t i = 0; i < width; ++i) o[i] += w[k] * yt[k * width + i];
    }
  };
  if (n_tokens >= 16)
    pool_.parallel_for(n_tokens, 4, rows);
  else
    rows(0, n_tokens, 0);
}

}  // namespace straw::cpu
