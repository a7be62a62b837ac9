// The CPU matmul kernels as tables of functions, one table per instruction-set level, and the data
// layouts they share: tiled (repacked) weights and quantized activations.
//
// Tiled weights. A quantized weight is cut into tiles of kTileRows = 16 consecutive rows (the last
// tile is padded with zero rows). A tile holds its 16 rows over the whole row length as a sequence
// of super-blocks of 256 elements (one K-quant / IQ4_XS block, or eight 32-element blocks; the last
// super-block of a row may hold fewer), each 64-byte aligned, so that a tile streams from memory as
// one sequential run. Inside a super-block of n blocks come n pieces of each plane, plane by plane,
// the small planes first (padded to 64 bytes before qh and before qs), so that everything a block
// reads lies at or behind its qs chunks, where the kernels' prefetch stream has already been:
//   d    the 16 rows' fp16 block scale (32 bytes per block).
//   m    the 16 rows' fp16 second scale: dmin (Q4_K, Q5_K) or m (Q5_1).
//   sc   the format's sub-block scale bytes, transposed: byte i of all 16 rows, then byte i+1...
//        IQ4_XS: scales_l[0..3] then scales_h as two bytes (96 bytes); Q4_K / Q5_K: the 12-byte
//        scales field (192 bytes); Q6_K: the 16 int8 scales (256 bytes).
//   qh   high level bits. Q5_0 / Q5_1 / Q5_K: 64 bytes per group of 32; row r's byte 4r+j holds the
//        fifth bit of element 8c+j in bit c and that of element 8c+4+j in bit 4+c (c = 0..3).
//        Q6_K: 128 bytes per group of 32; the first 64 hold bits 4-5 of element 8c+j in bits
//        2c..2c+1 of row r's byte 4r+j, the second 64 those of element 8c+4+j.
//   qs   4-bit levels (8-bit for Q8_0). Per 32 elements ("group of 32") of the block: four 64-byte
//        chunks; in chunk c, row r owns bytes 4r..4r+3, and byte j holds element 8c+j of the group
//        in its low nibble and element 8c+4+j in its high nibble. For Q8_0: eight chunks of 16 rows
//        x 4 bytes, chunk c holding elements 4c..4c+3.
//
// So a tile-block has exactly the bits of its 16 source blocks (Q6_K's super-block is padded from
// 3360 to 3392 bytes, before its qs plane), rearranged so that one 64-byte load gives four
// elements of each of 16 rows (one int32 lane per row), which is what a dot-product instruction
// (vpdpbusd) wants. Element order along the row is unchanged: the activations stay in natural
// order and a 4-byte broadcast feeds each instruction. (With the small planes after qs, a Q8_0
// block's scales lay 4 KB ahead of its levels, and every super-block began with a read no
// prefetch had covered.)
//
// Quantized activations (one token): int8 levels q with one float scale d per 32 elements
// (x ~= d * q; d = max|x| / 127, q = round-to-nearest-even(x * 127 / max|x|), the max over the 32
// elements or over the 256 of their span: ActParams), plus per-group sums
// that fold the weights' level offset and minimum into the dot product. See act_layout().
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "cpu/cpu_features.h"
#include "ops/backend.h"
#include "quant/format.h"
#include "quant/types.h"

namespace straw::cpu {

inline constexpr int kTileRows = 16;

constexpr size_t align64(size_t n) {
  return (n + 63) / 64 * 64;
}

struct TileLayout {
  quant::Type type = quant::Type::F32;
  int64_t n_in = 0;
  int block = 0;                                    // elements per format block (32 or 256)
  int64_t n_blocks = 0;                             // blocks per row
  size_t qs_block = 0, qh_block = 0, sc_block = 0;  // plane bytes per block (0: plane absent)
  bool has_m = false;
  int blocks_per_sb = 0;   // blocks per super-block of 256 elements
  size_t block_bytes = 0;  // all planes of one block
  size_t sb_bytes = 0;     // a full super-block, rounded up to 64
  size_t tile_bytes = 0;
};

// One cache line's software prefetch: __builtin_prefetch with locality 3 (into L1) or 1 (into
// L2). On x86 as an asm statement the compiler must keep: GCC 12 deleted every __builtin_prefetch
// of a loop that held nothing else, in some shapes of prefetch_ahead once inlined into the tile
// kernels (decode from memory then ran 20-30 % slower).
template <int kLocality>
inline void prefetch_line(const uint8_t* a) {
#if defined(__x86_64__)
  if constexpr (kLocality == 3)
    asm volatile("prefetcht0 %0" : : "m"(*a));
  else
    asm volatile("prefetcht2 %0" : : "m"(*a));
#else
  __builtin_prefetch(a, 0, kLocality);
#endif
}

// Software prefetch distances inside a tile, in bytes: one core's hardware prefetcher alone keeps
// too few lines in flight to stream at memory speed. The best distances depend on the core (see
// default_prefetch in cpu_features.h): into L1 8 KB ahead on Zen 5 (measured from 2 to 16 KB);
// on an Intel Xeon (2 MB L2) 2 KB into L1 (4 KB and more were 20-25 % slower to decode) and, on
// top, 4 KB into L2 (another 2-10 %). Read once at startup; constant afterwards.
inline const PrefetchDistances kPrefetch = default_prefetch();

// Prefetches the n bytes at p's distances ahead (p: the bytes the kernel reads now): every line
// into L1 and, where the CPU wants it, into L2, two lines per loop turn. For reads that advance by
// exactly n per call (the float kernels' k-lines); the tile kernels use StreamPrefetch.
inline void prefetch_ahead(const uint8_t* p, size_t n) {
  const uint8_t* l1 = p + kPrefetch.l1;
  const uint8_t* l2 = p + kPrefetch.l2;
  const bool to_l2 = kPrefetch.l2 > kPrefetch.l1;
  for (size_t off = 0; off < n; off += 128) {
    prefetch_line<3>(l1 + off);
    prefetch_line<3>(l1 + off + 64);
    if (to_l2) {
      prefetch_line<1>(l2 + off);
      prefetch_line<1>(l2 + off + 64);
    }
  }
}

// The software prefetch of one sequential read (a thread's run of tiles): each line once, at
// kPrefetch's distances ahead of where the kernel reads. A tile kernel reads a block's planes in
// an order of its own, so the prefetch follows the read's position in the stream (prefetch_group),
// not its addresses. On the Intel Xeon a prefetch per group of [pos + d, pos + d + n),
// as long as the group's bytes plus a line, asked for each line 1.2-2.8 times: the repeats held
// the load ports while every fill buffer waited on memory, and decode from memory ran at 14 of the
// 18 GB/s one core streams (BM_Matmul/T_matvec_memory, docs/cpu-kernels.md).
class StreamPrefetch {
 public:
  // The kernel reads from pos now and reads the n bytes that follow before it calls again.
  void advance(const uint8_t* pos, size_t n) {
    const uintptr_t at = reinterpret_cast<uintptr_t>(pos);
    const uintptr_t end = at + kPrefetch.l1 + n;
    // A jump (the first call, or a read that went back or skipped ahead) restarts the stream
    // from the read's own line.
    if (next_ + 64 < at || next_ > end + kPrefetch.l1) next_ = at & ~uintptr_t(63);
    const size_t to_l2 = kPrefetch.l2 > kPrefetch.l1 ? kPrefetch.l2 - kPrefetch.l1 : 0;
    for (; next_ < end; next_ += 64) {
      prefetch_line<3>(reinterpret_cast<const uint8_t*>(next_));
      if (to_l2) prefetch_line<1>(reinterpret_cast<const uint8_t*>(next_ + to_l2));
    }
  }

 private:
  uintptr_t next_ = 0;  // the next line to prefetch into L1
};

// The tile kernels' prefetch before group g of block b (kBlock / kGroup: the decoder's): the read's
// position in the tile's stream, as if a super-block's blocks followed one another (exact at
// super-block starts), and the group's share of its block's bytes.
template <int kBlock, int kGroup>
__attribute__((always_inline)) inline void prefetch_group(StreamPrefetch& pf, const TileLayout& L,
                                                          const uint8_t* tile, int64_t b, int g) {
  constexpr int kBlocksPerSb = quant::kSuperBlock / kBlock;
  const size_t per_group = L.block_bytes / (kBlock / kGroup);
  const size_t pos =
      size_t(b / kBlocksPerSb) * L.sb_bytes + size_t(b % kBlocksPerSb) * L.block_bytes;
  pf.advance(tile + pos + g * per_group, per_group);
}

// Byte offsets inside a tile of block b's piece of each plane.
struct BlockOffsets {
  size_t qs, qh, sc, d, m;
};

// The bytes of a super-block of n blocks before its qh plane (d, m and sc) and before its qs plane
// (d, m, sc and qh), each rounded up to 64 so that the 64-byte chunks of qh and qs stay aligned.
inline size_t sb_scales_bytes(const TileLayout& L, int64_t n) {
  return align64(size_t(n) * (32 + (L.has_m ? 32 : 0) + L.sc_block));
}
inline size_t sb_head_bytes(const TileLayout& L, int64_t n) {
  return align64(sb_scales_bytes(L, n) + size_t(n) * L.qh_block);
}

inline BlockOffsets block_offsets(const TileLayout& L, int64_t b) {
  const int64_t sb = b / L.blocks_per_sb, j = b % L.blocks_per_sb;
  const int64_t n = std::min<int64_t>(L.blocks_per_sb, L.n_blocks - sb * L.blocks_per_sb);
  const size_t base = size_t(sb) * L.sb_bytes;
  const size_t m_plane = L.has_m ? size_t(n) * 32 : 0;
  BlockOffsets o;
  o.d = base + j * 32;
  o.m = base + n * 32 + j * 32;
  o.sc = base + n * 32 + m_plane + j * L.sc_block;
  o.qh = base + sb_scales_bytes(L, n) + j * L.qh_block;
  o.qs = base + sb_head_bytes(L, n) + j * L.qs_block;
  return o;
}

// Block b's piece of each plane of a tile, as pointers.
struct Planes {
  const uint8_t* qs;
  const uint8_t* qh;
  const uint8_t* sc;
  const uint16_t* d;
  const uint16_t* m;
};

inline Planes planes(const TileLayout& L, const uint8_t* tile, int64_t b) {
  const BlockOffsets o = block_offsets(L, b);
  return {tile + o.qs, tile + o.qh, tile + o.sc, reinterpret_cast<const uint16_t*>(tile + o.d),
          reinterpret_cast<const uint16_t*>(tile + o.m)};
}

// Whether weights of type t are tiled (have integer kernels): Q4_0 Q5_0 Q5_1 Q8_0 IQ4_NL IQ4_XS
// Q4_K Q5_K Q6_K.
bool tiled_type(quant::Type t);

// The layout of a tile of type t (tiled_type) for rows of n_in elements.
TileLayout tile_layout(quant::Type t, int64_t n_in);

inline int64_t n_tiles(int64_t n_out) {
  return (n_out + kTileRows - 1) / kTileRows;
}

// Repacks rows [0, n_rows) (n_rows <= 16; the rest of the tile is zero) of a weight in its file
// layout (row r at src + r * src_row_bytes) into one tile at dst (L.tile_bytes bytes).
void repack_tile(const TileLayout& L, const void* src, size_t src_row_bytes, int n_rows, void* dst);

// Float weights (F32, F16, BF16) are grouped by kFloatRows rows, k-major: a group holds element
// k of its 32 rows, then element k + 1 of them, ... (element k of row r at (k * 32 + r) * esz,
// one 64-byte line per k for F16/BF16), missing rows zero, so that a group streams as one
// sequential run and a GEMM tile is an outer product: one vector of rows per k times one
// broadcast activation per token, accumulated in registers holding the outputs themselves (no
// horizontal sums). Each weight vector loaded and converted serves as many tokens as the tile
// holds (12 with AVX-512), where row-major chunks of 4 rows served 6 tokens per conversion and
// loaded the tokens' activations as vectors as well (the Intel Xeon's F16 GEMM,
// BM_Matmul/F16_gemm/1536/8960/512/2: 104 -> ~150 GMAC/s).
inline constexpr int kFloatRows = 32;

// F32, F16 or BF16.
bool float_type(quant::Type t);

inline int64_t float_groups(int64_t n_out) {
  return (n_out + kFloatRows - 1) / kFloatRows;
}

inline size_t float_group_bytes(quant::Type t, int64_t n_in) {
  return size_t(kFloatRows) * size_t(n_in) * (t == quant::Type::F32 ? 4 : 2);
}

// The order in which a float GEMM's register tiles (kFloatRows rows x up to kT tokens, over a
// range of elements k) cover y = W x, for every ISA's kernels. Many tokens: blocks of 96 tokens,
// and within a block K-ranges of 512 elements, so that the block's activations for a K-range
// (96 x 2 KiB) stay in L2 while every group passes over them and a tile's (12 x 2 KiB) in L1.
// Within a K-range, blocks of 16 groups (512 rows, 512 KiB of F16 weights) stay in L2 while each
// token tile passes over them. Each output's K-ranges are summed in order whatever the blocks.
// The weights are read once per token block. tile(g, t, n, k0, k1, rows): group g's first `rows`
// rows for tokens [t, t + n) over elements [k0, k1), adding to y when k0 > 0.
template <int kT, class Tile>
inline void for_float_tiles(int64_t n_in, int64_t n_rows, int n_tok, const Tile& tile) {
  constexpr int kTokenBlock = 96;
  constexpr int64_t kGroupBlock = 16;
  const int64_t step = n_tok > kT ? 512 : n_in;
  const int64_t n_groups = float_groups(n_rows);
  for (int t0 = 0; t0 < n_tok; t0 += kTokenBlock) {
    const int t1 = std::min(n_tok, t0 + kTokenBlock);
    for (int64_t k0 = 0; k0 < n_in; k0 += step) {
      const int64_t k1 = std::min(n_in, k0 + step);
      for (int64_t g0 = 0; g0 < n_groups; g0 += kGroupBlock) {
        const int64_t g1 = std::min(n_groups, g0 + kGroupBlock);
        for (int t = t0; t < t1; t += kT)
          for (int64_t g = g0; g < g1; ++g)
            tile(g, t, std::min(kT, t1 - t), k0, k1,
                 int(std::min<int64_t>(kFloatRows, n_rows - g * kFloatRows)));
      }
    }
  }
}

// Calls step(k, line) for k in [k0, k1) over a float group's k-major lines of kLine bytes (the
// line of element k at group + k * kLine), with the software prefetch two lines at a time: the
// loop of every ISA's float kernel.
template <size_t kLine, class Step>
__attribute__((always_inline)) inline void for_group_lines(const uint8_t* group, int64_t k0,
                                                           int64_t k1, Step&& step) {
  constexpr int64_t kPerPrefetch = 128 / kLine;  // k per two lines
  const uint8_t* p = group + size_t(k0) * kLine;
  int64_t k = k0;
  for (; k + kPerPrefetch <= k1; k += kPerPrefetch, p += 128) {
    prefetch_ahead(p, 128);
#pragma GCC unroll 2
    for (int64_t i = 0; i < kPerPrefetch; ++i) step(k + i, p + i * kLine);
  }
  for (; k < k1; ++k, p += kLine) step(k, p);
}

// Packs rows [0, n_rows) (n_rows <= kFloatRows) of a float weight (row r at src + r *
// src_row_bytes) into one group at dst (float_group_bytes bytes).
void repack_float_group(quant::Type t, int64_t n_in, const void* src, size_t src_row_bytes,
                        int n_rows, void* dst);

// Quantized activations of one token: where each array lives in the token's record.
struct ActLayout {
  int64_t n_in = 0;
  size_t d_off = 0;     // float d[n_in / 32]: the scale of each 32 elements
  size_t ds_off = 0;    // float ds[n_in / 32]: d * sum(q) per 32 (for formats with a minimum)
  size_t bias_off = 0;  // int32 bias[n_in / group]: -offset * sum(q) per group
  size_t sum_off = 0;   // int16 sum[n_in / 32]: sum(q) per 32 (pairs feed vpdpwssd with mins)
  size_t stride = 0;    // bytes per token; q (n_in int8) starts at 0
};

inline ActLayout act_layout(int64_t n_in) {
  ActLayout a;
  a.n_in = n_in;
  a.d_off = align64(size_t(n_in));
  a.ds_off = a.d_off + align64(size_t(n_in / 32) * 4);
  a.bias_off = a.ds_off + align64(size_t(n_in / 32) * 4);
  a.sum_off = a.bias_off + align64(size_t(n_in / 16) * 4);
  a.stride = a.sum_off + align64(size_t(n_in / 32) * 2);
  return a;
}

// The arrays of one token's record (act_layout) at `rec`: ActIn for the kernels that read it,
// ActOut for the quantizers that write it.
struct ActIn {
  const int8_t* q;
  const float* d;
  const float* ds;
  const int32_t* bias;
  const int16_t* sum;
};
struct ActOut {
  int8_t* q;
  float* d;
  float* ds;
  int32_t* bias;
  int16_t* sum;
};

inline ActIn act_in(const uint8_t* rec, const ActLayout& a) {
  return {reinterpret_cast<const int8_t*>(rec), reinterpret_cast<const float*>(rec + a.d_off),
          reinterpret_cast<const float*>(rec + a.ds_off),
          reinterpret_cast<const int32_t*>(rec + a.bias_off),
          reinterpret_cast<const int16_t*>(rec + a.sum_off)};
}

inline ActOut act_out(void* rec, const ActLayout& a) {
  auto* b = static_cast<uint8_t*>(rec);
  return {reinterpret_cast<int8_t*>(b), reinterpret_cast<float*>(b + a.d_off),
          reinterpret_cast<float*>(b + a.ds_off), reinterpret_cast<int32_t*>(b + a.bias_off),
          reinterpret_cast<int16_t*>(b + a.sum_off)};
}

// Tokens per pass over a thread's tiles: all of them for small batches (n_tok <= max_tok, the
// tokens of one kernel call); for prefill, a multiple of max_tok whose records fit kActBlockBytes,
// so that they stay in L2 while the tiles stream through.
inline constexpr size_t kActBlockBytes = 512 * 1024;

inline int act_token_block(const ActLayout& a, int n_tok, int max_tok) {
  if (n_tok <= max_tok) return n_tok;
  const int fit = int(kActBlockBytes / a.stride) / max_tok * max_tok;
  return std::clamp(fit, max_tok, n_tok);
}

// Tokens in the next kernel call when `left` tokens of a pass remain: the fewest calls of at most
// max_tok tokens, of equal size to within one (9 = 5 + 4, not 8 + 1). A call decodes its tile once
// whatever its token count, and a short remainder call costs nearly a full one: on Zen 5 (one
// core, 1536 x 512 in L2, four interleaved rounds) 9 Q4_K tokens as 8 + 1 took 48-73 us, as
// 5 + 4 33-36 (docs/benchmarks.md, "Zen 5 again").
inline int token_run(int left, int max_tok) {
  const int calls = (left + max_tok - 1) / max_tok;
  return (left + calls - 1) / calls;
}

// How an ISA's kernel for a tiled type wants its activations: the weights' unsigned level offset
// (the kernel multiplies levels u = w + offset), the group size of the bias sums, and the span of
// one scale. With span 256 (formats with 256-element blocks, as llama.cpp's Q8_K) one max|x| sets
// the scale of 256 elements and d repeats it over their 8 entries: the layout is the same, and a
// kernel may apply the activation scale once per block instead of once per group and token.
struct ActParams {
  int offset = 0;
  int group = 32;
  int span = 32;  // 32 or 256; a row's last span may be shorter (a multiple of 32)
};

// The level sums of the two 16-element halves of a 32-element block.
struct HalfSums {
  int lo = 0, hi = 0;
};

// What every activation quantizer shares: the spans (one scale per p.span elements) and the sums.
// block_max(i): max|x| of the 32 elements of block i; block_levels(i, amax): writes block i's q
// (x * 127 / amax rounded to nearest even, 0 when amax is 0) and returns its HalfSums. Fills d, ds,
// bias and sum of out.
template <class BlockMax, class BlockLevels>
void quantize_act_spans(int64_t n_in, ActParams p, const ActOut& out, BlockMax block_max,
                        BlockLevels block_levels) {
  const int64_t n_blocks = n_in / 32;
  const int per_span = p.span / 32;
  for (int64_t b0 = 0; b0 < n_blocks; b0 += per_span) {
    const int nb = int(std::min<int64_t>(per_span, n_blocks - b0));
    float m[8], span = 0;
    for (int k = 0; k < nb; ++k) span = std::max(span, m[k] = block_max(b0 + k));
    for (int k = 0; k < nb; ++k) {
      const int64_t i = b0 + k;
      const float amax = per_span > 1 ? span : m[k];
      const HalfSums h = block_levels(i, amax);
      const int sum = h.lo + h.hi;
      out.d[i] = amax / 127.0f;
      out.ds[i] = out.d[i] * float(sum);
      out.sum[i] = int16_t(sum);
      if (p.group == 32) {
        out.bias[i] = -p.offset * sum;
      } else {
        out.bias[2 * i] = -p.offset * h.lo;
        out.bias[2 * i + 1] = -p.offset * h.hi;
      }
    }
  }
}

// Reference activation quantizer (the definition the SIMD versions reproduce bit for bit).
void quantize_act_ref(const float* x, int64_t n_in, ActParams p, void* out);

struct MatKernels {
  Isa isa;
  // The activation parameters of tiled type t on this ISA.
  ActParams (*act_params)(quant::Type t);
  // One token of n_in floats (n_in a multiple of 32) to act_layout(n_in) bytes at out.
  void (*quantize_act)(const float* x, int64_t n_in, ActParams p, void* out);
  // y[t][r] = row r . token t for the rows of n_tiles consecutive tiles starting at `tiles`;
  // n_rows: valid rows from the first tile on (rows past it are not written); act: n_tok tokens of
  // act_layout(L.n_in).stride bytes quantized with act_params(L.type); y: row stride ldy floats,
  // pointing at the first tile's first row.
  void (*tiled)(const TileLayout& L, const uint8_t* tiles, int64_t n_tiles, int64_t n_rows,
                const uint8_t* act, int n_tok, float* y, int64_t ldy);
  // Float weights (F32, F16, BF16) in groups (repack_float_group) starting at `groups`: rows
  // [0, n_rows) times n_tok tokens of x (row stride ldx floats); y as above.
  void (*rows)(quant::Type t, const uint8_t* groups, int64_t n_in, int64_t n_rows, const float* x,
               int64_t ldx, int n_tok, float* y, int64_t ldy);
};

// Head h's rows of a CPU KV cache (K or V of element type t, head size dim): the CPU backend keeps
// each head's rows together, [n_heads][n_ctx] rows of kv_row_bytes(t, dim) (ops::KvLayer), so
// that attention reads one head's keys as one contiguous stream.
inline const uint8_t* cache_head(ops::KvType t, const void* cache, int64_t n_ctx, int64_t dim,
                                 int h) {
  return static_cast<const uint8_t*>(cache) + size_t(h) * size_t(n_ctx) * ops::kv_row_bytes(t, dim);
}
inline uint8_t* cache_head(ops::KvType t, void* cache, int64_t n_ctx, int64_t dim, int h) {
  return const_cast<uint8_t*>(cache_head(t, static_cast<const void*>(cache), n_ctx, dim, h));
}

// Element-wise and attention kernels (256-bit AVX2 + FMA + F16C; the AVX-VNNI and AVX-512 levels
// use them too: these ops are a small part of the time and mostly bound by memory or latency),
// except the integer scores of attention over a Q8_0 / Q4_0 K cache, which each level does with
// its own dot-product instruction (vpmaddubsw, VEX vpdpbusd, EVEX vpdpbusd).
struct VecKernels {
  // out[i] = gate[i] / (1 + exp(-gate[i])) * up[i]; out may alias gate or up.
  void (*swiglu)(const float* gate, const float* up, float* out, int64_t n);
  // sum of x[i]^2, accumulated in double.
  double (*sum_squares)(const float* x, int64_t n);
  // y[i] = x[i] * s * g[i]; y may alias x.
  void (*scale_mul)(const float* x, float s, const float* g, float* y, int64_t n);
  // Round to nearest even, as quant::fp32_to_fp16.
  void (*f32_to_f16)(const float* x, uint16_t* y, int64_t n);
  // x[i] = x[i] / (1 + exp(-x[i]))   (SiLU, in place)
  void (*silu)(float* x, int64_t n);
  // x[i] *= 1 / (1 + exp(-g[i]))   (sigmoid gate)
  void (*sigmoid_mul)(float* x, const float* g, int64_t n);
  // Attention for the query heads of KV head `kv_head`, query tokens [t0, t1) and keys [k0, k1)
  // (each row also stops at its causal limit): flash-style over key blocks with an online softmax,
  // each K/V block converted once for the whole head group. With partial null, the normalized
  // result goes to out. Otherwise the unnormalized state goes to partial, for attention_merge():
  // per row (row = (t - t0) * group + head of the group) Dv + 2 floats: sum_j e^(s_j - m) v_j, m
  // (the max score, -inf without keys), l = sum_j e^(s_j - m).
  // scratch: attention_scratch_floats(p, t1 - t0) floats.
  void (*attention)(const float* q, const ops::KvLayer& kv, float* out,
                    const ops::AttentionParams& p, int kv_head, int t0, int t1, int64_t k0,
                    int64_t k1, float* partial, float* scratch);
};

// Combines n partial states (attention's partial output for the same rows over disjoint key
// ranges, n blocks of `rows` x (dv + 2) floats, block i at parts + i * part_stride) into the
// normalized output, row r at out + r * dv: sum_i e^(m_i - m) O_i / sum_i e^(m_i - m) l_i.
void attention_merge(const float* parts, size_t part_stride, int n, int rows, int dv, float* out);

// Keys per block of the attention kernels.
inline constexpr int kAttnKeyBlock = 64;

// Scratch of the attention kernels. Besides the blocks and per-row state, rows * head_dim / 2
// floats hold the quantized query of a Q8_0 / Q4_0 K cache (head_dim int8 levels, head_dim / 32
// scales and biases per row: 1.25 head_dim bytes).
inline size_t attention_scratch_floats(const ops::AttentionParams& p, int n_q_tokens) {
  const size_t rows = size_t(p.n_heads / p.n_kv_heads) * size_t(n_q_tokens);
  const size_t v_block =
      std::max(size_t(kAttnKeyBlock) * size_t(p.head_dim_v), size_t(8) * size_t(p.head_dim));
  return size_t(kAttnKeyBlock) * size_t(p.head_dim) + v_block +
         rows * (kAttnKeyBlock + size_t(p.head_dim_v) + 2 + size_t(p.head_dim) / 2) + 64;
}

// A query head for a Q8_0 / Q4_0 K cache, quantized as llama.cpp quantizes it (to Q8_0, the
// dot-product type of both): per 32 elements x[i] ~= d * q[i], d rounded to fp16 as stored in a
// Q8_0 block (the reference rounding, quant::quantize_row). n is a multiple of 32; q gets n levels,
// d and sum (the sum of the 32 levels, for level offsets) n / 32 values. Every kernel level and the
// reference call this one function, so they all score the same integers.
void quantize_query(const float* x, int n, int8_t* q, float* d, int32_t* sum);

extern const VecKernels kVecKernelsAvx2;
extern const VecKernels kVecKernelsAvxVnni;  // attention with VEX vpdpbusd (attention_avx2.cpp)
extern const VecKernels kVecKernelsAvx512;   // attention with EVEX vpdpbusd (attention_avx512.cpp)

// The element-wise kernels for an ISA level, or null for Scalar.
const VecKernels* vec_kernels(Isa isa);

// The kernel table of an ISA level, or null for Scalar (the reference path in matmul.cpp) and for
// levels this build has no kernels for. Only call it for isa_supported() levels.
const MatKernels* mat_kernels(Isa isa);

extern const MatKernels kMatKernelsAvx2;
extern const MatKernels kMatKernelsAvxVnni;  // the AVX2 kernels with vpdpbusd (matmul_avx2.cpp)
extern const MatKernels kMatKernelsAvx512;
extern const MatKernels kMatKernelsAmx;  // AVX-512 plus AMX tile products (matmul_amx.cpp)

// The AVX-512 level's kernels by name (matmul_avx512.cpp), for the AMX level, which shares them:
// its table is then a constant (no code at load time, which would run AVX-512 instructions on any
// CPU, and no table left empty for other files' load-time code).
namespace avx512_mat {
ActParams act_params(quant::Type t);
void quantize_act(const float* x, int64_t n_in, ActParams p, void* out);
void tiled(const TileLayout& L, const uint8_t* tiles, int64_t n_tiles, int64_t n_rows,
           const uint8_t* act, int n_tok, float* y, int64_t ldy);
void rows(quant::Type t, const uint8_t* groups, int64_t n_in, int64_t n_rows, const float* x,
          int64_t ldx, int n_tok, float* y, int64_t ldy);
}  // namespace avx512_mat

}  // namespace straw::cpu
