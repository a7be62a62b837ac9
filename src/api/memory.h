// The RAM a model needs under a placement, and the check Model::load (and `straw plan`) make
// before anything is allocated: counted from what loading and a session really allocate.
#pragma once

#include <cstdint>
#include <string>

#include "cpu/cpu_features.h"
#include "gguf/gguf.h"
#include "sched/plan.h"

namespace straw {

struct RamNeed {
  uint64_t weights = 0;  // anonymous memory of the CPU's weight copies (CpuBackend::prepare_weight:
                         // repacked tiles / row groups, or plain copies)
  uint64_t mapped = 0;   // CPU weights read from the file mapping instead (page cache, which the
                         // kernel can evict: not counted); the token embedding table always is
  uint64_t kv = 0;       // KV caches of the CPU-resident attention at the plan's context, one per
                         // session
  uint64_t compute = 0;  // CPU compute buffers for one micro-batch
  uint64_t state = 0;    // recurrent state of CPU-resident linear layers and every layer's state
                         // checkpoints (host memory), one per session
  uint64_t total() const { return weights + kv + compute + state; }
};

// The RAM of plan p for the model in r, on a CPU backend with kernels `isa` that repacks weights
// when `repack` (ModelOptions::repack_weights), with `sessions` KV caches.
RamNeed ram_need(const gguf::Reader& r, const sched::Plan& p, cpu::Isa isa, bool repack,
                 int sessions = 1);

struct RamCheck {
  RamNeed need;            // with the options given
  RamNeed need_in_place;   // the same placement without repacking (--no-repack)
  uint64_t available = 0;  // cpu::available_memory()
  std::string source;      // "MemAvailable" or "STRAW_RAM_LIMIT"
  int64_t ctx = 0;         // the context the KV cache is sized for
  int sessions = 1;        // KV caches counted
  bool repack = true;
  bool fits() const { return available == 0 || need.total() <= available; }  // 0: unknown
};

RamCheck check_ram(const gguf::Reader& r, const sched::Plan& p, int64_t ctx, cpu::Isa isa,
                   bool repack, int sessions = 1);

// Why the model does not fit and what to do, with the numbers (empty when it fits). Several lines.
std::string ram_shortfall(const RamCheck& c, const sched::Plan& p);

// One line: "needs 11.20 GiB of RAM (weights 9.80 GiB, KV 1.00 GiB, compute 0.40 GiB) of 28.10 GiB
// available (MemAvailable)".
std::string ram_summary(const RamCheck& c);

}  // namespace straw
