// CpuBackend construction, scratch memory and load-time weight preparation (copy / repack).
#include "cpu/cpu_backend.h"

#include <algorithm>
#include <cstring>

#include "cpu/weight_arena.h"
#include "util/str.h"

namespace straw::cpu {

namespace {

// RAM left to the rest of the process and the system when sizing the weight copies: the KV cache,
// activations, the page cache of the model file (re-read only at load) and everything else.
size_t memory_reserve(size_t available) {
  return std::max<size_t>(size_t(1) << 30, available / 8);
}

}  // namespace

bool float_type(quant::Type t) {
  return t == quant::Type::F32 || t == quant::Type::F16 || t == quant::Type::BF16;
}

namespace {

// Bytes of one matrix of w in the layout prepare_weight gives it (tiles, float row groups or
// plain rows); an expert tensor holds n_expert of them back to back.
size_t matrix_copy_bytes(const ops::Weight& w) {
  if (tiled_type(w.type)) return size_t(n_tiles(w.n_out)) * tile_layout(w.type, w.n_in).tile_bytes;
  if (float_type(w.type)) return size_t(float_groups(w.n_out)) * float_group_bytes(w.type, w.n_in);
  return size_t(w.n_out) * w.row_bytes;
}

}  // namespace

size_t weight_copy_bytes(const ops::Weight& w, Isa isa, bool copy_weights) {
  if ((w.n_out <= 1 && w.n_expert <= 1) || !copy_weights || mat_kernels(isa) == nullptr) return 0;
  return matrix_copy_bytes(w) * size_t(w.n_expert);
}

std::string PrepareStatus::message() const {
  std::string s = str("weights: ", human_bytes(copied_bytes), " in anonymous memory",
                      huge_pages ? " (huge pages)" : "");
  if (n_in_place > 0)
    s += str(", ", human_bytes(in_place_bytes), " (", n_in_place, " tensors) used from the file",
             low_memory ? " because RAM is short: matmuls on them are slower (free memory or use a "
                          "smaller model)"
                        : "");
  return s;
}

CpuBackend::CpuBackend(int n_threads) : CpuBackend(CpuOptions{.n_threads = n_threads}) {}

CpuBackend::CpuBackend(const CpuOptions& options)
    : pool_(options.n_threads),
      isa_(options.isa.value_or(best_isa())),
      kernels_(nullptr),
      options_(options),
      scratch_(pool_.size()),
      arena_(std::make_unique<WeightArena>()) {
  if (!isa_supported(isa_))
    fail("this CPU does not support the ", isa_name(isa_),
         " kernels (it supports: ", describe_cpu(), ")");
  kernels_ = mat_kernels(isa_);
}

CpuBackend::~CpuBackend() = default;

float* CpuBackend::scratch(int thread, size_t n_floats) {
  std::vector<float>& s = scratch_[thread];
  if (s.size() < n_floats) s.resize(n_floats);
  return s.data();
}

uint8_t* CpuBackend::act_buffer(size_t bytes) {
  const size_t n = (bytes + 3) / 4;
  if (act_storage_.size() < n) act_storage_.resize(n);
  return reinterpret_cast<uint8_t*>(act_storage_.data());
}

ops::Weight CpuBackend::prepare_weight(const ops::Weight& w) {
  // Vectors (norm weights, biases: one row) are read element by element by the element-wise ops:
  // they stay as they are (weight_copy_bytes is 0 for them).
  if (w.n_out <= 1 && w.n_expert <= 1) return w;
  const size_t bytes = copy_bytes(w);
  const bool tiled = bytes > 0 && tiled_type(w.type);
  const bool grouped = bytes > 0 && float_type(w.type);
  auto keep = [&](bool low_memory) {
    status_.n_in_place += 1;
    status_.in_place_bytes += size_t(w.n_out) * w.row_bytes * size_t(w.n_expert);
    status_.low_memory = status_.low_memory || low_memory;
    return w;
  };
  if (!w.data || bytes == 0) return keep(false);

  if (options_.memory_budget == 0) {
    const size_t avail = available_memory();
    options_.memory_budget = avail > memory_reserve(avail) ? avail - memory_reserve(avail) : 1;
  }
  if (status_.copied_bytes + bytes > options_.memory_budget) return keep(true);
  auto* dst = static_cast<uint8_t*>(arena_->alloc(bytes));
  if (!dst) return keep(true);
  status_.n_copied += 1;
  status_.copied_bytes += bytes;
  status_.huge_pages = arena_->huge_pages();

  // An expert tensor is n_expert matrices, each prepared as a weight of its own would be and
  // stored back to back (expert e at e * expert_bytes), so that a matrix streams as one run.
  ops::Weight out = w;
  out.data = dst;
  out.expert_bytes = matrix_copy_bytes(w);
  const int64_t E = w.n_expert;
  const auto* src = static_cast<const uint8_t*>(w.data);
  const size_t src_matrix = w.n_expert > 1 ? w.expert_bytes : 0;
  if (tiled) {
    const TileLayout L = tile_layout(w.type, w.n_in);
    const int64_t tiles = n_tiles(w.n_out);
    out.layout = kLayoutTiled;
    pool_.parallel_for(E * tiles, 16, [&](int64_t i0, int64_t i1, int) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t e = i / tiles, t = i % tiles;
        const int rows = int(std::min<int64_t>(kTileRows, w.n_out - t * kTileRows));
        repack_tile(L, src + e * src_matrix + t * kTileRows * w.row_bytes, w.row_bytes, rows,
                    dst + e * out.expert_bytes + t * L.tile_bytes);
      }
    });
  } else if (grouped) {
    const size_t gb = float_group_bytes(w.type, w.n_in);
    const int64_t groups = float_groups(w.n_out);
    out.layout = kLayoutFloatRows;
    pool_.parallel_for(E * groups, 64, [&](int64_t i0, int64_t i1, int) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t e = i / groups, g = i % groups;
        const int rows = int(std::min<int64_t>(kFloatRows, w.n_out - g * kFloatRows));
        repack_float_group(w.type, w.n_in, src + e * src_matrix + g * kFloatRows * w.row_bytes,
                           w.row_bytes, rows, dst + e * out.expert_bytes + g * gb);
      }
    });
  } else {
    // Plain rows: the expert matrices are already back to back in the file.
    const int64_t rows = w.n_out * E;
    const int64_t grain = std::max<int64_t>(1, (int64_t(16) << 20) / int64_t(w.row_bytes + 1));
    pool_.parallel_for(rows, grain, [&](int64_t r0, int64_t r1, int) {
      std::memcpy(dst + r0 * w.row_bytes, src + r0 * w.row_bytes, size_t(r1 - r0) * w.row_bytes);
    });
  }
  return out;
}

}  // namespace straw::cpu
