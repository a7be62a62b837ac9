// CPU matmul: the SIMD paths (tiled integer kernels, float-row kernels) and the reference path
// (dequantize tiles of rows to float, float32 dot products), plus the embedding lookup.
#include <algorithm>

#include "cpu/cpu_backend.h"
#include "quant/quant.h"
#include "util/str.h"

namespace straw::cpu {

float dot_f32(const float* a, const float* b, int64_t n) {
  constexpr int kLanes = 16;
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += a[i + k] * b[i + k];
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int k = 0; k < w; ++k) acc[k] += acc[k + w];
  return acc[0];
}

namespace {

// Work items per thread in a matmul: enough that a thread slowed by other load hands its share to
// the others, few enough that each item streams a long contiguous run of weights.
constexpr int64_t kItemsPerThread = 8;
// From this many tokens on the activations are quantized in parallel, and matmul_many runs one
// matmul per weight (the products are long enough that a barrier each does not count).
constexpr int kParallelQuantTokens = 16;
// matmul_many fuses at most this many tiled weights (q / k / v; the delta-net's four inputs).
constexpr size_t kMaxFused = 4;

bool same_params(const ActParams& a, const ActParams& b) {
  return a.offset == b.offset && a.group == b.group && a.span == b.span;
}

}  // namespace

void CpuBackend::matmul(const ops::Weight& w, const float* x, float* y, int n_tokens) {
  if (n_tokens <= 0 || w.n_out <= 0) return;
  if (w.n_expert > 1) fail("internal error: matmul on an expert tensor (moe_matmul reads those)");
  if (kernels_ && tiled_type(w.type)) return matmul_tiled(w, x, y, n_tokens);
  if (kernels_ && float_type(w.type)) return matmul_rows(w, x, y, n_tokens);
  if (w.layout != 0) fail("internal error: weight layout ", w.layout, " on the reference path");
  matmul_reference(w, x, y, n_tokens);
}

uint8_t* CpuBackend::quantized_act(const float* x, int64_t n_in, int n_tokens,
                                   std::span<const ActParams> formats) {
  const ActLayout A = act_layout(n_in);
  const size_t bytes = A.stride * size_t(n_tokens);
  uint8_t* act = act_buffer(bytes * formats.size());
  auto quantize = [&](int64_t t0, int64_t t1, int) {
    for (size_t k = 0; k < formats.size(); ++k)
      for (int64_t t = t0; t < t1; ++t)
        kernels_->quantize_act(x + t * n_in, n_in, formats[k], act + k * bytes + t * A.stride);
  };
  if (n_tokens >= kParallelQuantTokens)
    pool_.parallel_for(n_tokens, 4, quantize);
  else
    quantize(0, n_tokens, 0);
  return act;
}

void CpuBackend::matmul_tiles(std::span<const ops::MatmulJob* const> jobs, const float* x,
                              int n_tokens) {
  // x quantized once per activation format: weight f reads format act_of[f].
  const int64_t n_in = jobs[0]->w->n_in;
  ActParams formats[kMaxFused];
  size_t act_of[kMaxFused], n_formats = 0;
  for (size_t f = 0; f < jobs.size(); ++f) {
    const ActParams ap = kernels_->act_params(jobs[f]->w->type);
    size_t k = 0;
    while (k < n_formats && !same_params(formats[k], ap)) ++k;
    if (k == n_formats) formats[n_formats++] = ap;
    act_of[f] = k;
  }
  const uint8_t* act = quantized_act(x, n_in, n_tokens, {formats, n_formats});
  const size_t act_bytes = act_layout(n_in).stride * size_t(n_tokens);

  // One region over the weights' tiles in a row: weight f has tiles [first[f], first[f + 1]).
  TileLayout L[kMaxFused];
  int64_t first[kMaxFused + 1] = {0};
  for (size_t f = 0; f < jobs.size(); ++f) {
    L[f] = tile_layout(jobs[f]->w->type, n_in);
    first[f + 1] = first[f] + n_tiles(jobs[f]->w->n_out);
  }
  const int64_t tiles = first[jobs.size()];
  const int64_t grain = std::max<int64_t>(1, tiles / (kItemsPerThread * pool_.size()));
  pool_.parallel_for(tiles, grain, [&](int64_t t0, int64_t t1, int) {
    for (size_t f = 0; f < jobs.size(); ++f) {
      const int64_t a = std::max(t0, first[f]), b = std::min(t1, first[f + 1]);
      if (a >= b) continue;
      const ops::Weight& w = *jobs[f]->w;
      const int64_t i0 = a - first[f];
      kernels_->tiled(L[f], static_cast<const uint8_t*>(w.data) + i0 * L[f].tile_bytes, b - a,
                      w.n_out - i0 * kTileRows, act + act_of[f] * act_bytes, n_tokens,
                      jobs[f]->y + i0 * kTileRows, w.n_out);
    }
  });
}

void CpuBackend::matmul_tiled(const ops::Weight& w, const float* x, float* y, int n_tokens) {
  if (w.layout == kLayoutTiled) {
    const ops::MatmulJob job{&w, y};
    const ops::MatmulJob* one = &job;
    return matmul_tiles({&one, 1}, x, n_tokens);
  }
  // In place (RAM was short at load): repack each tile into per-thread scratch first.
  const TileLayout L = tile_layout(w.type, w.n_in);
  const ActParams ap = kernels_->act_params(w.type);
  const uint8_t* act = quantized_act(x, w.n_in, n_tokens, {&ap, 1});
  const int64_t tiles = n_tiles(w.n_out);
  const int64_t grain = std::max<int64_t>(1, tiles / (kItemsPerThread * pool_.size()));
  const auto* src = static_cast<const uint8_t*>(w.data);
  pool_.parallel_for(tiles, grain, [&](int64_t t0, int64_t t1, int thread) {
    auto* tile = reinterpret_cast<uint8_t*>(scratch(thread, L.tile_bytes / 4 + 16));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t rows = std::min<int64_t>(kTileRows, w.n_out - t * kTileRows);
      repack_tile(L, src + t * kTileRows * w.row_bytes, w.row_bytes, int(rows), tile);
      kernels_->tiled(L, tile, 1, rows, act, n_tokens, y + t * kTileRows, w.n_out);
    }
  });
}

void CpuBackend::matmul_many(std::span<const ops::MatmulJob> jobs, const float* x, int n_tokens) {
  if (n_tokens <= 0) return;
  // The fused ones: tiled (repacked) weights, few tokens; the others one matmul each.
  const ops::MatmulJob* fused[kMaxFused];
  size_t n_fused = 0;
  for (const ops::MatmulJob& j : jobs) {
    const bool tiled = kernels_ && j.w->layout == kLayoutTiled && j.w->n_expert <= 1 &&
                       j.w->n_out > 0 && j.w->n_in == jobs[0].w->n_in;
    if (tiled && n_tokens < kParallelQuantTokens && n_fused < kMaxFused)
      fused[n_fused++] = &j;
    else
      matmul(*j.w, x, j.y, n_tokens);
  }
  if (n_fused > 0) matmul_tiles({fused, n_fused}, x, n_tokens);
}

void CpuBackend::matmul_rows(const ops::Weight& w, const float* x, float* y, int n_tokens) {
  const size_t gb = float_group_bytes(w.type, w.n_in);
  const int64_t groups = float_groups(w.n_out);
  const int64_t grain = std::max<int64_t>(1, groups / (kItemsPerThread * pool_.size()));
  if (w.layout == kLayoutFloatRows) {
    const auto* base = static_cast<const uint8_t*>(w.data);
    pool_.parallel_for(groups, grain, [&](int64_t g0, int64_t g1, int) {
      const int64_t r0 = g0 * kFloatRows, r1 = std::min(w.n_out, g1 * kFloatRows);
      kernels_->rows(w.type, base + g0 * gb, w.n_in, r1 - r0, x, w.n_in, n_tokens, y + r0, w.n_out);
    });
    return;
  }
  // In place (rows as in the file): group each run of rows into per-thread scratch first.
  const auto* src = static_cast<const uint8_t*>(w.data);
  pool_.parallel_for(groups, grain, [&](int64_t g0, int64_t g1, int thread) {
    auto* grp = reinterpret_cast<uint8_t*>(scratch(thread, gb / 4 + 16));
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t r0 = g * kFloatRows, rows = std::min<int64_t>(kFloatRows, w.n_out - r0);
      repack_float_group(w.type, w.n_in, src + r0 * w.row_bytes, w.row_bytes, int(rows), grp);
      kernels_->rows(w.type, grp, w.n_in, rows, x, w.n_in, n_tokens, y + r0, w.n_out);
    }
  });
}

void CpuBackend::matmul_reference(const ops::Weight& w, const float* x, float* y, int n_tokens) {
  // Weight rows are processed in tiles of kTile: each tile is dequantized once into per-thread
  // scratch and reused for every token, so the cost of dequantization is paid once per batch.
  constexpr int64_t kTile = 8;
  const int64_t n_in = w.n_in, n_out = w.n_out;
  const bool is_f32 = w.type == quant::Type::F32;
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t n_row_tiles = (n_out + kTile - 1) / kTile;
  pool_.parallel_for(n_row_tiles, 1, [&](int64_t t0, int64_t t1, int thread) {
    float* tile = is_f32 ? nullptr : scratch(thread, static_cast<size_t>(kTile * n_in));
    for (int64_t ti = t0; ti < t1; ++ti) {
      const int64_t r0 = ti * kTile, r1 = std::min(n_out, r0 + kTile);
      const float* rows[kTile];
      for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* src = base + r * w.row_bytes;
        if (is_f32) {
          rows[r - r0] = reinterpret_cast<const float*>(src);
        } else {
          float* dst = tile + (r - r0) * n_in;
          quant::dequantize_row(w.type, src, dst, n_in);
          rows[r - r0] = dst;
        }
      }
      for (int t = 0; t < n_tokens; ++t) {
        const float* xt = x + static_cast<int64_t>(t) * n_in;
        float* yt = y + static_cast<int64_t>(t) * n_out;
        for (int64_t r = r0; r < r1; ++r) yt[r] = dot_f32(rows[r - r0], xt, n_in);
      }
    }
  });
}

void CpuBackend::get_rows(const ops::Weight& table, std::span<const int32_t> tokens, float* out) {
  if (table.layout != 0)
    fail("internal error: get_rows on a repacked weight (embedding tables are used in place)");
  const auto* base = static_cast<const uint8_t*>(table.data);
  for (size_t t = 0; t < tokens.size(); ++t) {
    const int32_t id = tokens[t];
    if (id < 0 || id >= table.n_out)
      fail("token id ", id, " at position ", t, " is outside the vocabulary (0..", table.n_out - 1,
           ")");
    quant::dequantize_row(table.type, base + id * table.row_bytes, out + t * table.n_in,
                          table.n_in);
  }
}

}  // namespace straw::cpu
