// What straw::Model and straw::Session hold (shared by the files of src/api).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cpu/cpu_backend.h"
#include "gguf/gguf.h"
#include "model/chat.h"
#include "model/hparams.h"
#include "model/sampler.h"
#include "model/tokenizer/tokenizer.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "ops/profile.h"
#include "sched/calibration.h"
#include "sched/plan.h"
#include "straw/straw.h"
#include "util/str.h"

namespace straw {

struct Model::Impl {
  ModelOptions options;
  ModelInfo info;
  std::unique_ptr<gguf::Reader> reader;  // owns the mmap the weights point into
  model::HParams hp;
  model::Weights weights;
  std::unique_ptr<model::Tokenizer> tokenizer;
  model::ChatTemplate chat_template = model::ChatTemplate::None;
  model::ChatOptions chat_options;
  std::unique_ptr<cpu::CpuBackend> cpu;            // always present (embeddings, CPU-placed layers)
  std::unique_ptr<ops::Backend> gpu;               // when the plan puts something on a GPU
  std::unique_ptr<ops::ProfiledBackend> profiler;  // ModelOptions::profile_ops: wraps `cpu`
  model::DeviceMap devices;                        // which backend runs each part
  sched::Plan plan;                                // the placement (CPU only: the default plan)
  int64_t n_ctx = 0;                         // context of new sessions (resolved from options)
  std::unique_ptr<model::Transformer> exec;  // activation buffers shared by the sessions
  std::atomic<bool> evaluating{false};       // an evaluation is running (they must not overlap)

  // The forward pass, created on first use (sized for one micro-batch of options.ubatch tokens).
  model::Transformer& transformer();
  // Binds and places the MTP / NextN blocks on first use (weights.mtp); throws when the file has
  // none, saying how to get them.
  void bind_mtp();
  std::mutex mtp_mutex;
};

// Holds Impl::evaluating for one evaluation. Sessions of a model share its worker threads and
// activation buffers: an evaluation starting while another runs (from another thread) is a
// caller's bug, refused with `what` (say which evaluations overlap and what to do) rather than
// left to corrupt both.
class EvaluationGuard {
 public:
  EvaluationGuard(Model::Impl& m, const char* what) : busy_(m.evaluating) {
    if (busy_.exchange(true)) fail(what);
  }
  ~EvaluationGuard() { busy_.store(false); }
  EvaluationGuard(const EvaluationGuard&) = delete;
  EvaluationGuard& operator=(const EvaluationGuard&) = delete;

 private:
  std::atomic<bool>& busy_;
};

// The MTP proposer's access to a session (session.cpp): the output-normed last hidden states
// its evaluations keep once keep_hidden() was called, rows [n][n_embd] for positions pos0..
struct SessionInternals {
  struct Hidden {
    const float* rows = nullptr;
    int64_t pos0 = 0;
    int64_t n = 0;
  };
  static void keep_hidden(Session& s);
  static Hidden hidden(const Session& s);
  // Forgets the rows of positions before `pos` (the MTP block has read them).
  static void drop_hidden_before(Session& s, int64_t pos);
};

struct Sampler::Impl {
  model::Sampler sampler;
  std::vector<std::pair<int32_t, float>> bias;  // logit_bias
  std::vector<float> biased;                    // logits + bias, [n_vocab]
  std::vector<uint8_t> allowed;                 // constraint mask, [n_vocab]
  std::vector<float> masked;                    // logits with the refused tokens at -inf
};

// The ops-level (and planner) type of a KV cache option.
inline ops::KvType kv_type(KvCacheType t) {
  switch (t) {
    case KvCacheType::F16:
      return ops::KvType::F16;
    case KvCacheType::F32:
      return ops::KvType::F32;
    case KvCacheType::Q8_0:
      return ops::KvType::Q8_0;
    case KvCacheType::Q4_0:
      return ops::KvType::Q4_0;
  }
  return ops::KvType::F16;
}

// The CPU kernel level a ModelOptions::cpu_kernels value forces (none for Auto: the CPU's best).
inline std::optional<cpu::Isa> cpu_isa(CpuKernels k) {
  switch (k) {
    case CpuKernels::Auto:
      return std::nullopt;
    case CpuKernels::Amx:
      return cpu::Isa::Amx;
    case CpuKernels::Avx512:
      return cpu::Isa::Avx512;
    case CpuKernels::AvxVnni:
      return cpu::Isa::AvxVnni;
    case CpuKernels::Avx2:
      return cpu::Isa::Avx2;
    case CpuKernels::Scalar:
      return cpu::Isa::Scalar;
  }
  return std::nullopt;
}

// Creates the backends and fills m.devices (and m.plan) from m.options (src/api/placement.cpp).
void choose_backends(Model::Impl& m);
// The placement plan for this model under a VRAM budget.
sched::Plan plan_model(const Model::Impl& m, uint64_t vram_budget);
// CUDA kernels that have not run on a GPU yet are used only where the environment opts in
// (scripts/gpu-check.sh sets both variables while it verifies them):
// qwen35 / qwen35moe on the GPU (cuda/linear_attention.cu): STRAW_CUDA_LINEAR_ATTENTION=1;
bool linear_attention_on_gpu();
// mixture-of-experts FFNs on the GPU (cuda/moe.cu): STRAW_CUDA_MOE=1.
bool moe_on_gpu();

}  // namespace straw
