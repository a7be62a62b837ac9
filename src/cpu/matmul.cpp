// CPU reference matmul and embedding lookup: dequantize weight rows to float, float32 dot products.
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

void CpuBackend::matmul(const ops::Weight& w, const float* x, float* y, int n_tokens) {
  // Weight rows are processed in tiles of kTile: each tile is dequantized once into per-thread
  // scratch and reused for every token, so the cost of dequantization is paid once per batch.
  constexpr int64_t kTile = 8;
  const int64_t n_in = w.n_in, n_out = w.n_out;
  const bool is_f32 = w.type == quant::Type::F32;
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t n_tiles = (n_out + kTile - 1) / kTile;
  pool_.parallel_for(n_tiles, 1, [&](int64_t t0, int64_t t1, int thread) {
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
