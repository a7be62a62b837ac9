// AVX-512 matmul kernels: integer dot products (vpdpbusd) of tiled quantized weights with int8
// activations, and FMA kernels for float weights. Built with AVX-512 (F BW VL DQ VNNI BF16 VBMI)
// enabled; only called when cpu_features() reports all of it.
//
// One tile is 16 rows: each 64-byte chunk of a tile-block decodes to unsigned levels u = w + offset
// for 4 elements of each row, one row per int32 lane, and vpdpbusd adds u . q(4 activations) into
// the row's lane. Per group (the format's scale granularity, 32 or 16 elements) and token:
//   y += cvt(sum u q - offset * sum q) * scale_g * d_x   (+ min_g * d_x * sum q for formats with a
// minimum), so the integer part is exact and one float FMA per group applies both scales.
//
// GCC 12's intrinsics headers start some results from _mm*_undefined_*(), which -Wuninitialized
// reports once inlined (a false positive of GCC 12); the values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <utility>

#include "cpu/kernels.h"
#include "cpu/quant_decode_avx512.h"
#include "cpu/vec_avx512.h"

namespace straw::cpu {

namespace {

using quant::Type;

constexpr int kMaxTok = 8;  // tokens per kernel call (16 rows x 8 tokens of accumulators)

using avx512::dpbusd_bcast;
using namespace dec512;  // the format decoders (quant_decode_avx512.h)

// ---- the generic tile kernel -------------------------------------------------------------------

// One group of one tile-block for T tokens: integer dot products, then the scales: the dot part
// into dot (acc, or the block sum with kBlockActScale), the minimum part into acc.
template <class D, int T>
__attribute__((always_inline)) inline void group_step(const TileLayout& L, const uint8_t* tile,
                                                      const D& dec, int64_t b, int g,
                                                      const ActIn* tok, __m512* dot, __m512* acc,
                                                      StreamPrefetch& pf) {
  const int64_t e0 = b * D::kBlock + int64_t(g) * D::kGroup;
  // Software prefetch ahead of the read (one sequential run per thread): one core's hardware
  // prefetcher alone does not keep enough lines in flight to stream at memory speed.
  prefetch_group<D::kBlock, D::kGroup>(pf, L, tile, b, g);
  __m512i ia[T], ib[T];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    ia[t] = D::kOffset ? _mm512_set1_epi32(tok[t].bias[e0 / D::kGroup]) : _mm512_setzero_si512();
    ib[t] = _mm512_setzero_si512();
  }
#pragma GCC unroll 4
  for (int p = 0; p < D::kGroup / 8; ++p) {
    __m512i w0, w1;
    dec.weights(g, p, w0, w1);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const int8_t* x = tok[t].q + e0 + 8 * p;
      ia[t] = dpbusd_bcast(ia[t], w0, x);
      // One token: a second accumulator halves the dependency chain.
      __m512i& second = T == 1 ? ib[t] : ia[t];
      second = dpbusd_bcast(second, w1, x + 4);
    }
  }
  const __m512 s = dec.scale(g);
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    const __m512i sum = T == 1 ? _mm512_add_epi32(ia[t], ib[t]) : ia[t];
    const __m512 sd =
        kBlockActScale<D, T> ? s : _mm512_mul_ps(s, _mm512_set1_ps(tok[t].d[e0 / 32]));
    dot[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), sd, dot[t]);
  }
  if constexpr (D::kMin && !kBlockActScale<D, T>) {
    const __m512 mn = dec.min(g);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
      acc[t] = _mm512_fmadd_ps(mn, _mm512_set1_ps(tok[t].ds[e0 / 32]), acc[t]);
  }
}

// The minimum part of a block with one activation scale (kBlockActScale), before that scale:
// blk -= dmin * sum_g m_g * sum(q_g), the sum over groups in integers (vpdpwssd over group pairs),
// instead of a float FMA per group and token. With the hoisted scale, BM_Matmul 1536x512 at 4
// tokens: Q4_K 131 -> 150 GMAC/s per core.
template <class D, int T>
__attribute__((always_inline)) inline void block_mins(const D& dec, int64_t b, const ActIn* tok,
                                                      __m512* blk) {
  constexpr int kGroups = D::kBlock / D::kGroup;
  __m512i im[T];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) im[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
  for (int g = 0; g < kGroups; g += 2) {
    const __m512i mp = dec.min_pair(g);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
      im[t] = avx512::dpwssd_bcast(im[t], mp, tok[t].sum + b * kGroups + g);
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
    blk[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(im[t]), dec.negmin, blk[t]);
}

template <class D, int T>
void tile_kernel(const TileLayout& L, const uint8_t* tile, const ActIn* tok, float* y, int64_t ldy,
                 __mmask16 mask, StreamPrefetch& pf) {
  constexpr int kGroups = D::kBlock / D::kGroup;
  __m512 acc[T];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  D dec;
  for (int64_t b = 0; b < L.n_blocks; ++b) {
    dec.begin(planes(L, tile, b));
    __m512 blk[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) blk[t] = _mm512_setzero_ps();
    __m512* dot = kBlockActScale<D, T> ? blk : acc;
    // Few tokens: the groups unrolled (constant shifts and scale positions). Many tokens: a loop,
    // whose smaller body ran up to 1.8x faster at 8 tokens (Q4_K) than the unrolled one on Zen 5.
    if constexpr (T <= 4) {
#pragma GCC unroll 16
      for (int g = 0; g < kGroups; ++g) group_step<D, T>(L, tile, dec, b, g, tok, dot, acc, pf);
    } else {
#pragma GCC unroll 1
      for (int g = 0; g < kGroups; ++g) group_step<D, T>(L, tile, dec, b, g, tok, dot, acc, pf);
    }
    if constexpr (kBlockActScale<D, T>) {
      if constexpr (D::kMin) block_mins<D, T>(dec, b, tok, blk);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
        acc[t] = _mm512_fmadd_ps(blk[t], _mm512_set1_ps(tok[t].d[b * 8]), acc[t]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + t * ldy, mask, acc[t]);
}

template <class D>
void tile_tokens(int n, const TileLayout& L, const uint8_t* tile, const ActIn* tok, float* y,
                 int64_t ldy, __mmask16 mask, StreamPrefetch& pf) {
  switch (n) {
    case 1:
      return tile_kernel<D, 1>(L, tile, tok, y, ldy, mask, pf);
    case 2:
      return tile_kernel<D, 2>(L, tile, tok, y, ldy, mask, pf);
    case 3:
      return tile_kernel<D, 3>(L, tile, tok, y, ldy, mask, pf);
    case 4:
      return tile_kernel<D, 4>(L, tile, tok, y, ldy, mask, pf);
    case 5:
      return tile_kernel<D, 5>(L, tile, tok, y, ldy, mask, pf);
    case 6:
      return tile_kernel<D, 6>(L, tile, tok, y, ldy, mask, pf);
    case 7:
      return tile_kernel<D, 7>(L, tile, tok, y, ldy, mask, pf);
    default:
      return tile_kernel<D, 8>(L, tile, tok, y, ldy, mask, pf);
  }
}

template <class D>
void tiled_impl(const TileLayout& L, const uint8_t* tiles, int64_t n_tiles, int64_t n_rows,
                const uint8_t* act, int n_tok, float* y, int64_t ldy) {
  const ActLayout A = act_layout(L.n_in);
  const int block = act_token_block(A, n_tok, kMaxTok);
  ActIn tok[kMaxTok];
  StreamPrefetch pf;
  for (int t0 = 0; t0 < n_tok; t0 += block) {
    const int t1 = std::min(n_tok, t0 + block);
    for (int64_t i = 0; i < n_tiles; ++i) {
      const int64_t rows = std::min<int64_t>(kTileRows, n_rows - i * kTileRows);
      if (rows <= 0) break;
      const __mmask16 mask = avx512::first_lanes(int(rows));
      const uint8_t* tile = tiles + i * L.tile_bytes;
      for (int t = t0, n = 0; t < t1; t += n) {
        n = token_run(t1 - t, kMaxTok);
        for (int k = 0; k < n; ++k) {
          tok[k] = act_in(act + size_t(t + k) * A.stride, A);
        }
        tile_tokens<D>(n, L, tile, tok, y + t * ldy + i * kTileRows, ldy, mask, pf);
      }
    }
  }
}

void tiled(const TileLayout& L, const uint8_t* tiles, int64_t n_tiles, int64_t n_rows,
           const uint8_t* act, int n_tok, float* y, int64_t ldy) {
  with_decoder(L.type, [&]<class D>(std::type_identity<D>) {
    tiled_impl<D>(L, tiles, n_tiles, n_rows, act, n_tok, y, ldy);
  });
}

ActParams act_params(Type t) {
  ActParams p{0, 32};
  with_decoder(t, [&]<class D>(std::type_identity<D>) {
    p = {D::kOffset, D::kGroup == 16 ? 16 : 32, D::kSpan};
  });
  return p;
}

// ---- activation quantization -------------------------------------------------------------------

void quantize_act(const float* x, int64_t n_in, ActParams p, void* out) {
  const ActOut o = act_out(out, act_layout(n_in));
  auto block_max = [&](int64_t i) {
    const float* xb = x + 32 * i;
    return _mm512_reduce_max_ps(
        _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xb)), _mm512_abs_ps(_mm512_loadu_ps(xb + 16))));
  };
  auto block_levels = [&](int64_t i, float amax) {
    const __m512 vid = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    // cvtps2dq rounds to nearest even (the default MXCSR mode), as nearbyint does.
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 32 * i), vid));
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 32 * i + 16), vid));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o.q + 32 * i), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o.q + 32 * i + 16), _mm512_cvtepi32_epi8(q1));
    return HalfSums{_mm512_reduce_add_epi32(q0), _mm512_reduce_add_epi32(q1)};
  };
  quantize_act_spans(n_in, p, o, block_max, block_levels);
}

// ---- float weights -----------------------------------------------------------------------------

// 16 consecutive weights of a group's line (16 rows at one k) as floats.
template <Type W>
inline __m512 load_w(const uint8_t* p) {
  if constexpr (W == Type::F32) {
    return _mm512_loadu_ps(p);
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (W == Type::F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// y[t][r] (+)= sum over k in [k0, k1) of W[r][k] x[t][k] for the 32 rows of a group (kernels.h)
// and T tokens, as outer products: per k, the line's two vectors of 16 rows times each token's
// x[t][k] broadcast, into 2 x T accumulators that hold y's rows themselves (add: accumulate into
// y, for K-ranged GEMM; only the first n_rows rows are written). T = 12 takes 24 accumulators,
// the two weight vectors and a broadcast: 27 of the 32 zmm registers.
template <Type W, int T>
void group_kernel(const uint8_t* group, int64_t k0, int64_t k1, const float* x, int64_t ldx,
                  float* y, int64_t ldy, int n_rows, bool add) {
  constexpr size_t kLine = size_t(kFloatRows) * (W == Type::F32 ? 4 : 2);  // bytes of one k
  __m512 lo[T], hi[T];
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) lo[t] = hi[t] = _mm512_setzero_ps();
  auto step = [&](int64_t k, const uint8_t* line) {
    const __m512 w0 = load_w<W>(line), w1 = load_w<W>(line + kLine / 2);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      const __m512 b = _mm512_set1_ps(x[t * ldx + k]);
      lo[t] = _mm512_fmadd_ps(w0, b, lo[t]);
      hi[t] = _mm512_fmadd_ps(w1, b, hi[t]);
    }
  };
  for_group_lines<kLine>(group, k0, k1, step);
  const __mmask16 m0 = avx512::first_lanes(n_rows), m1 = avx512::first_lanes(n_rows - 16);
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
    float* yt = y + t * ldy;
    if (add) {
      lo[t] = _mm512_add_ps(lo[t], _mm512_maskz_loadu_ps(m0, yt));
      hi[t] = _mm512_add_ps(hi[t], _mm512_maskz_loadu_ps(m1, yt + 16));
    }
    _mm512_mask_storeu_ps(yt, m0, lo[t]);
    _mm512_mask_storeu_ps(yt + 16, m1, hi[t]);
  }
}

template <Type W, int... T>
void group_tokens(int n, std::integer_sequence<int, T...>, const uint8_t* group, int64_t k0,
                  int64_t k1, const float* x, int64_t ldx, float* y, int64_t ldy, int n_rows,
                  bool add) {
  ((n == T + 1 ? group_kernel<W, T + 1>(group, k0, k1, x, ldx, y, ldy, n_rows, add) : void()), ...);
}

template <Type W>
void rows_impl(const uint8_t* groups, int64_t n_in, int64_t n_rows, const float* x, int64_t ldx,
               int n_tok, float* y, int64_t ldy) {
  constexpr int kT = 12;
  const size_t group_bytes = float_group_bytes(W, n_in);
  for_float_tiles<kT>(
      n_in, n_rows, n_tok, [&](int64_t g, int t, int n, int64_t k0, int64_t k1, int rows) {
        group_tokens<W>(n, std::make_integer_sequence<int, kT>(), groups + g * group_bytes, k0, k1,
                        x + t * ldx, ldx, y + t * ldy + g * kFloatRows, ldy, rows, k0 > 0);
      });
}

void rows(Type t, const uint8_t* groups, int64_t n_in, int64_t n_rows, const float* x, int64_t ldx,
          int n_tok, float* y, int64_t ldy) {
  switch (t) {
    case Type::F32:
      return rows_impl<Type::F32>(groups, n_in, n_rows, x, ldx, n_tok, y, ldy);
    case Type::F16:
      return rows_impl<Type::F16>(groups, n_in, n_rows, x, ldx, n_tok, y, ldy);
    case Type::BF16:
      return rows_impl<Type::BF16>(groups, n_in, n_rows, x, ldx, n_tok, y, ldy);
    default:
      break;
  }
}

}  // namespace

constinit const MatKernels kMatKernelsAvx512 = {Isa::Avx512, &act_params, &quantize_act, &tiled,
                                                &rows};

namespace avx512_mat {

ActParams act_params(Type t) {
  return cpu::act_params(t);
}
void quantize_act(const float* x, int64_t n_in, ActParams p, void* out) {
  cpu::quantize_act(x, n_in, p, out);
}
void tiled(const TileLayout& L, const uint8_t* tiles, int64_t n_tiles, int64_t n_rows,
           const uint8_t* act, int n_tok, float* y, int64_t ldy) {
  cpu::tiled(L, tiles, n_tiles, n_rows, act, n_tok, y, ldy);
}
void rows(Type t, const uint8_t* groups, int64_t n_in, int64_t n_rows, const float* x, int64_t ldx,
          int n_tok, float* y, int64_t ldy) {
  cpu::rows(t, groups, n_in, n_rows, x, ldx, n_tok, y, ldy);
}

}  // namespace avx512_mat

}  // namespace straw::cpu
