// Tile layouts of the quantized weight formats, the load-time repacker and the reference
// activation quantizer (see kernels.h for the layouts).
#include <cmath>
#include <cstring>

#include "cpu/kernels.h"
#include "quant/formats.h"
#include "util/str.h"

namespace straw::cpu {

namespace {

using quant::Type;

struct PlaneSizes {
  int block;
  size_t qs, qh, sc;
  bool m;
};

PlaneSizes plane_sizes(Type t) {
  switch (t) {
    case Type::Q4_0:
    case Type::IQ4_NL:
      return {32, 256, 0, 0, false};
    case Type::Q5_0:
      return {32, 256, 64, 0, false};
    case Type::Q5_1:
      return {32, 256, 64, 0, true};
    case Type::Q8_0:
      return {32, 512, 0, 0, false};
    case Type::IQ4_XS:
      return {256, 2048, 0, 96, false};
    case Type::Q4_K:
      return {256, 2048, 0, 192, true};
    case Type::Q5_K:
      return {256, 2048, 512, 192, true};
    case Type::Q6_K:
      return {256, 2048, 1024, 256, false};
    default:
      break;
  }
  fail("internal error: type ", quant::type_name(t), " has no tiled layout");
}

// The levels of one group of 32 elements of the 16 rows of a tile: lo = low 4 bits (or the int8
// level for Q8_0), hi = the bits above them.
struct Group {
  uint8_t lo[kTileRows][32];
  uint8_t hi[kTileRows][32];
};

// Writes a group's low nibbles as four chunks of 16 rows x 4 bytes (64 bytes each).
void put_nibbles(const Group& g, uint8_t* dst) {
  for (int c = 0; c < 4; ++c)
    for (int r = 0; r < kTileRows; ++r)
      for (int j = 0; j < 4; ++j)
        dst[64 * c + 4 * r + j] = uint8_t(g.lo[r][8 * c + j] | g.lo[r][8 * c + 4 + j] << 4);
}

// Q8_0: eight chunks of 16 rows x 4 bytes.
void put_bytes(const Group& g, uint8_t* dst) {
  for (int c = 0; c < 8; ++c)
    for (int r = 0; r < kTileRows; ++r)
      for (int j = 0; j < 4; ++j) dst[64 * c + 4 * r + j] = g.lo[r][4 * c + j];
}

// One fifth bit per element (64 bytes).
void put_bit5(const Group& g, uint8_t* dst) {
  for (int r = 0; r < kTileRows; ++r)
    for (int j = 0; j < 4; ++j) {
      unsigned v = 0;
      for (int c = 0; c < 4; ++c)
        v |= unsigned(g.hi[r][8 * c + j]) << c | unsigned(g.hi[r][8 * c + 4 + j]) << (4 + c);
      dst[4 * r + j] = uint8_t(v);
    }
}

// Two high bits per element (128 bytes).
void put_bits56(const Group& g, uint8_t* dst) {
  for (int r = 0; r < kTileRows; ++r)
    for (int j = 0; j < 4; ++j) {
      unsigned v0 = 0, v1 = 0;
      for (int c = 0; c < 4; ++c) {
        v0 |= unsigned(g.hi[r][8 * c + j]) << (2 * c);
        v1 |= unsigned(g.hi[r][8 * c + 4 + j]) << (2 * c);
      }
      dst[4 * r + j] = uint8_t(v0);
      dst[64 + 4 * r + j] = uint8_t(v1);
    }
}

// Nibbles of a 32-element block stored as in Q4_0 (byte j: element j low, j + 16 high).
void split_q4_0(const uint8_t* qs, uint8_t* lo) {
  for (int j = 0; j < 16; ++j) {
    lo[j] = qs[j] & 0xF;
    lo[j + 16] = qs[j] >> 4;
  }
}

template <class Block>
const Block& block_at(const uint8_t* src, size_t row_bytes, int r, int64_t b) {
  return reinterpret_cast<const Block*>(src + r * row_bytes)[b];
}

void put_half(uint16_t v, uint8_t* plane, int r) {
  std::memcpy(plane + 2 * r, &v, 2);
}

// Repacks tile-block b (all 16 rows; rows >= n_rows were zeroed by the caller's memset and are
// skipped here, leaving zero levels and scales).
void repack_block(const TileLayout& L, const uint8_t* src, size_t rb, int n_rows, int64_t b,
                  uint8_t* tile) {
  const BlockOffsets o = block_offsets(L, b);
  uint8_t* qs = tile + o.qs;
  uint8_t* qh = tile + o.qh;
  uint8_t* sc = tile + o.sc;
  uint8_t* d = tile + o.d;
  uint8_t* m = tile + o.m;
  Group g{};
  switch (L.type) {
    case Type::Q4_0:
    case Type::IQ4_NL: {
      static_assert(sizeof(quant::BlockQ4_0) == sizeof(quant::BlockIQ4NL));
      for (int r = 0; r < n_rows; ++r) {
        const auto& blk = block_at<quant::BlockQ4_0>(src, rb, r, b);
        split_q4_0(blk.qs, g.lo[r]);
        put_half(blk.d, d, r);
      }
      put_nibbles(g, qs);
      return;
    }
    case Type::Q5_0:
    case Type::Q5_1: {
      for (int r = 0; r < n_rows; ++r) {
        const uint8_t* qsr;
        uint32_t bits;
        if (L.type == Type::Q5_0) {
          const auto& blk = block_at<quant::BlockQ5_0>(src, rb, r, b);
          qsr = blk.qs;
          bits = quant::load_qh32(blk.qh);
          put_half(blk.d, d, r);
        } else {
          const auto& blk = block_at<quant::BlockQ5_1>(src, rb, r, b);
          qsr = blk.qs;
          bits = quant::load_qh32(blk.qh);
          put_half(blk.d, d, r);
          put_half(blk.m, m, r);
        }
        split_q4_0(qsr, g.lo[r]);
        for (int i = 0; i < 32; ++i) g.hi[r][i] = (bits >> i) & 1;
      }
      put_nibbles(g, qs);
      put_bit5(g, qh);
      return;
    }
    case Type::Q8_0: {
      for (int r = 0; r < n_rows; ++r) {
        const auto& blk = block_at<quant::BlockQ8_0>(src, rb, r, b);
        std::memcpy(g.lo[r], blk.qs, 32);
        put_half(blk.d, d, r);
      }
      put_bytes(g, qs);
      return;
    }
    case Type::IQ4_XS: {
      for (int r = 0; r < n_rows; ++r) {
        const auto& blk = block_at<quant::BlockIQ4XS>(src, rb, r, b);
        put_half(blk.d, d, r);
        for (int i = 0; i < 4; ++i) sc[16 * i + r] = blk.scales_l[i];
        sc[64 + r] = uint8_t(blk.scales_h & 0xFF);
        sc[80 + r] = uint8_t(blk.scales_h >> 8);
      }
      for (int s = 0; s < 8; ++s) {
        for (int r = 0; r < n_rows; ++r)
          split_q4_0(block_at<quant::BlockIQ4XS>(src, rb, r, b).qs + 16 * s, g.lo[r]);
        put_nibbles(g, qs + 256 * s);
      }
      return;
    }
    case Type::Q4_K:
    case Type::Q5_K: {
      const bool q5 = L.type == Type::Q5_K;
      for (int r = 0; r < n_rows; ++r) {
        const uint8_t* scales;
        if (q5) {
          const auto& blk = block_at<quant::BlockQ5K>(src, rb, r, b);
          put_half(blk.d, d, r);
          put_half(blk.dmin, m, r);
          scales = blk.scales;
        } else {
          const auto& blk = block_at<quant::BlockQ4K>(src, rb, r, b);
          put_half(blk.d, d, r);
          put_half(blk.dmin, m, r);
          scales = blk.scales;
        }
        for (int i = 0; i < 12; ++i) sc[16 * i + r] = scales[i];
      }
      for (int s = 0; s < 8; ++s) {
        const int c = s / 2, shift = 4 * (s % 2);
        for (int r = 0; r < n_rows; ++r) {
          const uint8_t* q = q5 ? block_at<quant::BlockQ5K>(src, rb, r, b).qs
                                : block_at<quant::BlockQ4K>(src, rb, r, b).qs;
          for (int l = 0; l < 32; ++l) g.lo[r][l] = (q[32 * c + l] >> shift) & 0xF;
          if (q5) {
            const uint8_t* h = block_at<quant::BlockQ5K>(src, rb, r, b).qh;
            for (int l = 0; l < 32; ++l) g.hi[r][l] = (h[l] >> s) & 1;
          }
        }
        put_nibbles(g, qs + 256 * s);
        if (q5) put_bit5(g, qh + 64 * s);
      }
      return;
    }
    case Type::Q6_K: {
      for (int r = 0; r < n_rows; ++r) {
        const auto& blk = block_at<quant::BlockQ6K>(src, rb, r, b);
        put_half(blk.d, d, r);
        for (int i = 0; i < 16; ++i) sc[16 * i + r] = uint8_t(blk.scales[i]);
      }
      for (int s = 0; s < 8; ++s) {
        const int h = s / 4, q4 = s % 4;
        for (int r = 0; r < n_rows; ++r) {
          const auto& blk = block_at<quant::BlockQ6K>(src, rb, r, b);
          const uint8_t* ql = blk.ql + 64 * h + 32 * (q4 % 2);
          const uint8_t* qhr = blk.qh + 32 * h;
          for (int l = 0; l < 32; ++l) {
            g.lo[r][l] = (ql[l] >> (4 * (q4 / 2))) & 0xF;
            g.hi[r][l] = (qhr[l] >> (2 * q4)) & 3;
          }
        }
        put_nibbles(g, qs + 256 * s);
        put_bits56(g, qh + 128 * s);
      }
      return;
    }
    default:
      break;
  }
  fail("internal error: no repacker for ", quant::type_name(L.type));
}

}  // namespace

bool tiled_type(quant::Type t) {
  switch (t) {
    case Type::Q4_0:
    case Type::Q5_0:
    case Type::Q5_1:
    case Type::Q8_0:
    case Type::IQ4_NL:
    case Type::IQ4_XS:
    case Type::Q4_K:
    case Type::Q5_K:
    case Type::Q6_K:
      return true;
    default:
      return false;
  }
}

TileLayout tile_layout(quant::Type t, int64_t n_in) {
  const PlaneSizes p = plane_sizes(t);
  if (n_in <= 0 || n_in % p.block != 0)
    fail("internal error: rows of ", n_in, " elements do not split into ", quant::type_name(t),
         " blocks");
  TileLayout L;
  L.type = t;
  L.n_in = n_in;
  L.block = p.block;
  L.n_blocks = n_in / p.block;
  L.qs_block = p.qs;
  L.qh_block = p.qh;
  L.sc_block = p.sc;
  L.has_m = p.m;
  L.blocks_per_sb = quant::kSuperBlock / p.block;
  L.block_bytes = p.qs + p.qh + p.sc + 32 + (p.m ? 32 : 0);
  L.sb_bytes = sb_head_bytes(L, L.blocks_per_sb) + L.blocks_per_sb * L.qs_block;
  const int64_t full = L.n_blocks / L.blocks_per_sb, rest = L.n_blocks % L.blocks_per_sb;
  L.tile_bytes = full * L.sb_bytes + (rest ? sb_head_bytes(L, rest) + rest * L.qs_block : 0);
  return L;
}

void repack_tile(const TileLayout& L, const void* src, size_t src_row_bytes, int n_rows,
                 void* dst) {
  auto* tile = static_cast<uint8_t*>(dst);
  std::memset(tile, 0, L.tile_bytes);
  for (int64_t b = 0; b < L.n_blocks; ++b)
    repack_block(L, static_cast<const uint8_t*>(src), src_row_bytes, n_rows, b, tile);
}

namespace {

// The transpose of repack_float_group for elements of type E: 64 elements of each row at a time,
// so that the rows' source lines and the group's destination lines of a step stay in L1.
template <class E>
void transpose_rows(int64_t n_in, const uint8_t* src, size_t src_row_bytes, int n_rows, E* out) {
  constexpr int64_t kStep = 256;
  for (int64_t k0 = 0; k0 < n_in; k0 += kStep) {
    const int64_t k1 = std::min(n_in, k0 + kStep);
    for (int r = 0; r < n_rows; ++r) {
      const auto* row = reinterpret_cast<const E*>(src + r * src_row_bytes);
      for (int64_t k = k0; k < k1; ++k) out[k * kFloatRows + r] = row[k];
    }
  }
}

}  // namespace

void repack_float_group(quant::Type t, int64_t n_in, const void* src, size_t src_row_bytes,
                        int n_rows, void* dst) {
  if (n_rows < kFloatRows) std::memset(dst, 0, float_group_bytes(t, n_in));
  const auto* s = static_cast<const uint8_t*>(src);
  if (t == Type::F32)
    transpose_rows(n_in, s, src_row_bytes, n_rows, static_cast<uint32_t*>(dst));
  else
    transpose_rows(n_in, s, src_row_bytes, n_rows, static_cast<uint16_t*>(dst));
}

void quantize_act_ref(const float* x, int64_t n_in, ActParams p, void* out) {
  const ActOut o = act_out(out, act_layout(n_in));
  auto block_max = [&](int64_t i) {
    float m = 0;
    for (int j = 0; j < 32; ++j) m = std::fmax(m, std::fabs(x[32 * i + j]));
    return m;
  };
  auto block_levels = [&](int64_t i, float amax) {
    const float id = amax > 0 ? 127.0f / amax : 0.0f;
    HalfSums h;
    for (int j = 0; j < 32; ++j) {
      const int v = int(std::nearbyint(x[32 * i + j] * id));
      o.q[32 * i + j] = int8_t(v);
      (j < 16 ? h.lo : h.hi) += v;
    }
    return h;
  };
  quantize_act_spans(n_in, p, o, block_max, block_levels);
}

const MatKernels* mat_kernels(Isa isa) {
  switch (isa) {
    case Isa::Avx2:
      return &kMatKernelsAvx2;
    case Isa::AvxVnni:
      return &kMatKernelsAvxVnni;
    case Isa::Avx512:
      return &kMatKernelsAvx512;
    case Isa::Amx:
      return &kMatKernelsAmx;
    case Isa::Scalar:
      break;
  }
  return nullptr;
}

const VecKernels* vec_kernels(Isa isa) {
  switch (isa) {
    case Isa::Avx2:
      return &kVecKernelsAvx2;
    case Isa::AvxVnni:
      return &kVecKernelsAvxVnni;
    case Isa::Avx512:
    case Isa::Amx:
      return &kVecKernelsAvx512;
    case Isa::Scalar:
      break;
  }
  return nullptr;
}

}  // namespace straw::cpu
