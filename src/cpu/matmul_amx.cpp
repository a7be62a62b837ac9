// AMX matmul kernels (Intel Xeon from Sapphire Rapids on): the prompt's tiled quantized matmuls
// as int8 tile products (tdpbssd), everything else as the AVX-512 level. Built with AVX-512 and
// AMX-TILE / AMX-INT8 enabled; only called when cpu_features() reports AMX and Linux granted the
// tile state (cpu_features.cpp).
//
// One weight tile (16 rows) is decoded once per token block into signed levels w = u - offset,
// group by group, in the AMX B layout: a group of G elements is G/4 rows of 64 bytes, row j holding
// elements 4j..4j+3 of each of the 16 weight rows (exactly what the AVX-512 decoders produce per
// chunk). Then for each 16 tokens and group: C(16 tokens x 16 rows, int32) = A . B, A being the
// tokens' int8 activations of the group (16 rows of G bytes, read in place from their records).
// The float epilogue is the AVX-512 kernels' one, in the same order:
//   y += cvt(C) * (scale_g * d_x)   (+ min_g * d_x * sum q for Q5_1), per group, or for Q4_K /
//   Q5_K per block: blk += cvt(C) * scale_g over its groups, blk += -dmin * sum_g m_g sum q_g
//   (integers), y += blk * d_x,
// so the results equal those of the AVX-512 level's 8-token tiles bit for bit
// (tests/cpu_matmul_test.cpp): whether a batch reached 16 tokens changes no token's output, as far
// as the AVX-512 level itself does not depend on the batch (its Q6_K kernel scales tiles of up to
// 5 tokens in another order than larger ones). One tdpbssd does 16 x 16 x G
// multiply-adds (8192 for G = 32) where vpdpbusd does 64; the epilogue (two or three float
// operations per token and group on 16 rows) is what bounds the kernel.
//
// GCC 12's intrinsics headers start some results from _mm*_undefined_*(), which -Wuninitialized
// reports once inlined (a false positive of GCC 12); the values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/quant_decode_avx512.h"
#include "cpu/vec_avx512.h"

namespace straw::cpu {

namespace {

using namespace dec512;  // the format decoders (quant_decode_avx512.h)

constexpr int kTok = 16;  // tokens per tile product (A and C rows)

// ldtilecfg's 64-byte operand (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row of tile i
  uint8_t rows[16] = {};
};

// The tile registers hold two groups in flight: set 0 in tiles 0 (C), 2 (A), 4 (B), set 1 in tiles
// 1, 3, 5 (GCC's tile intrinsics paste their tile operand into the assembly text, so the numbers
// are literals below). Shapes for groups of `group` elements: C 16 x 16 int32, A 16 tokens x group
// bytes, B group / 4 rows x 64 bytes.
void configure_tiles(int group) {
  TileConfig c;
  for (int i : {0, 1}) c.colsb[i] = 64, c.rows[i] = kTok;
  for (int i : {2, 3}) c.colsb[i] = uint16_t(group), c.rows[i] = kTok;
  for (int i : {4, 5}) c.colsb[i] = 64, c.rows[i] = uint8_t(group / 4);
  // Not _tile_loadconfig: GCC 12's macro tells the compiler it reads 8 bytes of the operand, and
  // the stores of the shapes were then dropped as dead (every tile instruction faulted).
  asm volatile("ldtilecfg %0" : : "m"(c));
}

// One 64-byte line: 16 int8 x 4 (a B tile row) or 16 floats (a scale vector).
struct alignas(64) Line {
  uint8_t b[64];
};

// One weight tile decoded for the tile products: the signed levels of every group (group i's B
// tile, G / 4 lines, at w + i * G / 4) and each group's scale (and minimum) for the 16 rows.
struct DecodedTile {
  std::vector<Line> w;
  std::vector<Line> scale, min;
  // kBlockScale formats: per block, the 16 rows' -dmin and their mins as int16 pairs of groups
  // (2i, 2i + 1), four lines (min_pair of the AVX-512 decoder).
  std::vector<Line> negmin, min_pairs;
};

// The epilogue's form is that of the AVX-512 kernels' 8-token tiles (kBlockActScale,
// quant_decode_avx512.h): for Q4_K and Q5_K a block's groups scaled by the weights' group scales
// only, the minimum part in integers and the activation scale once per block; the others per
// group. Same form, same order: a token's result does not depend on whether its batch ran here or
// there.
template <class D>
inline constexpr bool kBlockScale = kBlockActScale<D, 8>;

template <class D>
void decode_tile(const TileLayout& L, const uint8_t* tile, DecodedTile& out) {
  constexpr int kGroups = D::kBlock / D::kGroup;
  const int64_t n_groups = L.n_blocks * kGroups;
  out.w.resize(size_t(n_groups) * D::kGroup / 4);
  out.scale.resize(size_t(n_groups));
  if constexpr (D::kMin) out.min.resize(size_t(n_groups));
  if constexpr (kBlockScale<D>) {
    out.negmin.resize(size_t(L.n_blocks));
    out.min_pairs.resize(size_t(L.n_blocks) * kGroups / 2);
  }
  const __m512i offset = _mm512_set1_epi8(char(D::kOffset));
  D dec;
  for (int64_t b = 0; b < L.n_blocks; ++b) {
    dec.begin(planes(L, tile, b));
    if constexpr (kBlockScale<D>) {
      _mm512_store_ps(out.negmin[size_t(b)].b, dec.negmin);
      for (int g = 0; g < kGroups; g += 2)
        _mm512_store_si512(out.min_pairs[size_t(b * kGroups + g) / 2].b, dec.min_pair(g));
    }
    for (int g = 0; g < kGroups; ++g) {
      const int64_t gi = b * kGroups + g;
      Line* rows = out.w.data() + gi * (D::kGroup / 4);
#pragma GCC unroll 4
      for (int p = 0; p < D::kGroup / 8; ++p) {
        __m512i w0, w1;
        dec.weights(g, p, w0, w1);
        _mm512_store_si512(rows[2 * p].b, _mm512_sub_epi8(w0, offset));
        _mm512_store_si512(rows[2 * p + 1].b, _mm512_sub_epi8(w1, offset));
      }
      _mm512_store_ps(out.scale[size_t(gi)].b, dec.scale(g));
      if constexpr (D::kMin) _mm512_store_ps(out.min[size_t(gi)].b, dec.min(g));
    }
  }
}

// The activation scales of a block of tokens, 16 tokens at a time, for the epilogue's broadcasts
// from one base: token tile j's d and d * sum q of 32-element block i at d / ds + (j * n_in / 32 +
// i) * 16 (16 tokens' values together). The int8 levels stay in their records: tileloadd reads 16
// rows A.stride apart.
struct ActScales {
  std::vector<float> d, ds;
  std::vector<int32_t> sum2;  // kBlockScale: sum q of blocks (2i, 2i + 1) as an int16 pair
};

template <class D>
void gather_scales(const uint8_t* act, const ActLayout& A, int n_tok, ActScales& out) {
  const int64_t n32 = A.n_in / 32;
  out.d.resize(size_t(n_tok * n32));
  if constexpr (kBlockScale<D>)
    out.sum2.resize(out.d.size() / 2);
  else if constexpr (D::kMin)
    out.ds.resize(out.d.size());
  for (int t = 0; t < n_tok; ++t) {
    const ActIn in = act_in(act + size_t(t) * A.stride, A);
    const int j = t / kTok, r = t % kTok;
    float* d = out.d.data() + size_t(j) * n32 * kTok + r;
    for (int64_t i = 0; i < n32; ++i) d[i * kTok] = in.d[i];
    if constexpr (kBlockScale<D>) {
      int32_t* s2 = out.sum2.data() + size_t(j) * (n32 / 2) * kTok + r;
      for (int64_t i = 0; i < n32 / 2; ++i) std::memcpy(&s2[i * kTok], in.sum + 2 * i, 4);
    } else if constexpr (D::kMin) {
      float* ds = out.ds.data() + size_t(j) * n32 * kTok + r;
      for (int64_t i = 0; i < n32; ++i) ds[i * kTok] = in.ds[i];
    }
  }
}

// tileloadd into tile N from rows `stride` bytes apart: GCC 12's _tile_loadd does not tell the
// compiler that it reads memory, which would let it move the writes of the decoded weights after
// the load.
#define STRAW_TILE_LOAD(N, base, stride)                                   \
  asm volatile("tileloadd (%0,%1,1), %%tmm" #N                             \
               :                                                           \
               : "r"(static_cast<const void*>(base)), "r"(int64_t(stride)) \
               : "memory")

// A group's product in tile set `set`: C = A . B (A: 16 token rows of G bytes at a, lda bytes
// apart; B: the decoded group at b).
inline void start_group(int set, const int8_t* a, int64_t lda, const void* b) {
  if (set == 0) {
    _tile_zero(0);
    STRAW_TILE_LOAD(2, a, lda);
    STRAW_TILE_LOAD(4, b, 64);
    _tile_dpbssd(0, 2, 4);
  } else {
    _tile_zero(1);
    STRAW_TILE_LOAD(3, a, lda);
    STRAW_TILE_LOAD(5, b, 64);
    _tile_dpbssd(1, 3, 5);
  }
}

// Stores tile set `set`'s C (16 tokens x 16 rows of int32) to c.
inline void store_group(int set, int32_t* c) {
  if (set == 0)
    _tile_stored(0, c, 64);
  else
    _tile_stored(1, c, 64);
}

// The end of block b for kBlockScale formats, as block_mins and tile_kernel in matmul_avx512.cpp:
// blk += -dmin * (sum over groups of m_g * sum q_g, in integers), then y = blk * d_x (first
// block) or y += blk * d_x, and blk = 0. lo / hi: tokens 0-7 / 8-15; d, s2: the token tile's
// part of ActScales.
template <class D>
__attribute__((always_inline)) inline void finish_block(const DecodedTile& dt, int64_t b,
                                                        const float* d, const int32_t* s2,
                                                        bool first, float* y, int64_t ldy,
                                                        __mmask16 mask, __m512* lo, __m512* hi) {
  constexpr int kPairs = D::kBlock / D::kGroup / 2;
  const __m512 negmin = _mm512_load_ps(dt.negmin[size_t(b)].b);
  __m512i mp[kPairs];
#pragma GCC unroll 4
  for (int i = 0; i < kPairs; ++i)
    mp[i] = _mm512_load_si512(dt.min_pairs[size_t(b * kPairs + i)].b);
  const int32_t* sb = s2 + b * kPairs * kTok;         // pair i of token r at sb[i * kTok + r]
  const float* db = d + b * (D::kBlock / 32) * kTok;  // the block's activation scale
#pragma GCC unroll 16
  for (int r = 0; r < kTok; ++r) {
    __m512 blk = r < kTok / 2 ? lo[r] : hi[r - kTok / 2];
    __m512i im = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int i = 0; i < kPairs; ++i)
      im = _mm512_dpwssd_epi32(im, mp[i], _mm512_set1_epi32(sb[i * kTok + r]));
    blk = _mm512_fmadd_ps(_mm512_cvtepi32_ps(im), negmin, blk);
    const __m512 dx = _mm512_set1_ps(db[r]);
    float* yr = y + r * ldy;
    const __m512 out =
        first ? _mm512_mul_ps(blk, dx) : _mm512_fmadd_ps(blk, dx, _mm512_maskz_loadu_ps(mask, yr));
    _mm512_mask_storeu_ps(yr, mask, out);
  }
#pragma GCC unroll 8
  for (int r = 0; r < kTok / 2; ++r) lo[r] = hi[r] = _mm512_setzero_ps();
}

// y[t][r] for one token tile (q: its first token's levels, lda bytes to the next; d, ds, s2: its
// part of ActScales) and the decoded tile's 16 rows (the first popcount(mask) written). The tile
// unit works two groups ahead of the vector unit: in step gi, group gi's product starts, group gi -
// 1's (started a step before) is stored to a ring, and group gi - 2's (stored a step before) is
// read into the accumulators, so neither the product nor the store is waited for right away. Not
// cloned: GCC's constant-propagation clones of this function kept the accumulators on the stack, a
// load and a store around every FMA (BM_Matmul/IQ4_XS_gemm/1536/8960/512/2 336 -> 703 GMAC/s
// without them).
#if defined(__GNUC__) && !defined(__clang__)
#define STRAW_NOCLONE __attribute__((noclone))
#else
#define STRAW_NOCLONE
#endif
template <class D>
STRAW_NOCLONE void tile_tokens(const DecodedTile& dt, int64_t n_groups, const int8_t* q,
                               int64_t lda, const float* d, const float* ds, const int32_t* s2,
                               float* y, int64_t ldy, __mmask16 mask) {
  constexpr int G = D::kGroup, kGroupsPerBlock = D::kBlock / D::kGroup;
  alignas(64) int32_t ring[3][kTok * 16];
  // Two arrays of 8: GCC keeps arrays of up to 8 vectors in registers, one of 16 on the stack.
  __m512 lo[kTok / 2], hi[kTok / 2];
#pragma GCC unroll 8
  for (int r = 0; r < kTok / 2; ++r) lo[r] = hi[r] = _mm512_setzero_ps();
  for (int64_t gi = 0; gi < n_groups + 2; ++gi) {
    if (gi < n_groups) start_group(int(gi & 1), q + gi * G, lda, dt.w.data() + gi * (G / 4));
    if (gi >= 1 && gi <= n_groups) store_group(int((gi - 1) & 1), ring[(gi - 1) % 3]);
    if (gi < 2) continue;
    const int64_t g = gi - 2, i32 = g * G / 32;  // the group read now; its 32-element block
    const int32_t* c = ring[g % 3];
    const __m512 s = _mm512_load_ps(dt.scale[size_t(g)].b);
    if constexpr (kBlockScale<D>) {
      // blk += C * scale_g; at the block's end the minimum part and the activation scale.
#pragma GCC unroll 8
      for (int r = 0; r < kTok / 2; ++r) {
        const int r2 = r + kTok / 2;
        lo[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * r)), s, lo[r]);
        hi[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * r2)), s, hi[r]);
      }
      if ((g + 1) % kGroupsPerBlock == 0)
        finish_block<D>(dt, g / kGroupsPerBlock, d, s2, g + 1 == kGroupsPerBlock, y, ldy, mask, lo,
                        hi);
      continue;
    }
    const float* dg = d + i32 * kTok;
#pragma GCC unroll 8
    for (int r = 0; r < kTok / 2; ++r) {
      const int r2 = r + kTok / 2;
      const __m512 c0 = _mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * r));
      const __m512 c1 = _mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * r2));
      lo[r] = _mm512_fmadd_ps(c0, _mm512_mul_ps(s, _mm512_set1_ps(dg[r])), lo[r]);
      hi[r] = _mm512_fmadd_ps(c1, _mm512_mul_ps(s, _mm512_set1_ps(dg[r2])), hi[r]);
    }
    if constexpr (D::kMin) {
      const __m512 mn = _mm512_load_ps(dt.min[size_t(g)].b);
      const float* dsg = ds + i32 * kTok;
#pragma GCC unroll 8
      for (int r = 0; r < kTok / 2; ++r) {
        lo[r] = _mm512_fmadd_ps(mn, _mm512_set1_ps(dsg[r]), lo[r]);
        hi[r] = _mm512_fmadd_ps(mn, _mm512_set1_ps(dsg[r + kTok / 2]), hi[r]);
      }
    }
  }
  if constexpr (kBlockScale<D>) return;  // finish_block wrote y
#pragma GCC unroll 8
  for (int r = 0; r < kTok / 2; ++r) {
    _mm512_mask_storeu_ps(y + r * ldy, mask, lo[r]);
    _mm512_mask_storeu_ps(y + (r + kTok / 2) * ldy, mask, hi[r]);
  }
}

template <class D>
void tiled_impl(const TileLayout& L, const uint8_t* tiles, int64_t n_tiles, int64_t n_rows,
                const uint8_t* act, int n_tok, float* y, int64_t ldy) {
  // Few tokens, and the last n_tok % 16: the AVX-512 kernels.
  const ActLayout A = act_layout(L.n_in);
  const int n16 = n_tok / kTok * kTok;
  if (n16 < n_tok)
    avx512_mat::tiled(L, tiles, n_tiles, n_rows, act + size_t(n16) * A.stride, n_tok - n16,
                      y + n16 * ldy, ldy);
  if (n16 == 0) return;
  configure_tiles(D::kGroup);
  const int64_t n_groups = L.n_in / D::kGroup, n32 = L.n_in / 32;
  // Tokens per decode of a weight tile: as many as 1.5 MiB of records (the decode is then a small
  // part of the work, and the tile loads read the records from L2).
  const int block = std::clamp(int((3u << 19) / A.stride) / kTok * kTok, kTok, n16);
  thread_local DecodedTile dt;
  thread_local ActScales sc;
  for (int t0 = 0; t0 < n16; t0 += block) {
    const int t1 = std::min(n16, t0 + block);
    gather_scales<D>(act + size_t(t0) * A.stride, A, t1 - t0, sc);
    for (int64_t i = 0; i < n_tiles; ++i) {
      const int64_t rows = std::min<int64_t>(kTileRows, n_rows - i * kTileRows);
      if (rows <= 0) break;
      decode_tile<D>(L, tiles + i * L.tile_bytes, dt);
      const __mmask16 mask = avx512::first_lanes(int(rows));
      for (int t = t0; t < t1; t += kTok) {
        const int j = (t - t0) / kTok;
        const auto* q = reinterpret_cast<const int8_t*>(act + size_t(t) * A.stride);
        const float* d = sc.d.data() + size_t(j) * n32 * kTok;
        const float* ds = sc.ds.empty() ? nullptr : sc.ds.data() + size_t(j) * n32 * kTok;
        const int32_t* s2 =
            sc.sum2.empty() ? nullptr : sc.sum2.data() + size_t(j) * (n32 / 2) * kTok;
        tile_tokens<D>(dt, n_groups, q, int64_t(A.stride), d, ds, s2, y + t * ldy + i * kTileRows,
                       ldy, mask);
      }
    }
  }
  // The tile state back to its initial state: the kernel then need not save this thread's 8 KiB
  // of tiles at every context switch between matmuls.
  _tile_release();
}

void tiled(const TileLayout& L, const uint8_t* tiles, int64_t n_tiles, int64_t n_rows,
           const uint8_t* act, int n_tok, float* y, int64_t ldy) {
  with_decoder(L.type, [&]<class D>(std::type_identity<D>) {
    tiled_impl<D>(L, tiles, n_tiles, n_rows, act, n_tok, y, ldy);
  });
}

}  // namespace

// The AVX-512 level's activations (the tile products read the same records) and float kernels.
constinit const MatKernels kMatKernelsAmx = {Isa::Amx, &avx512_mat::act_params,
                                             &avx512_mat::quantize_act, &tiled, &avx512_mat::rows};

}  // namespace straw::cpu
