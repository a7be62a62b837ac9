// RAM accounting for a placement and the memory check before loading (see memory.h).
#include "api/memory.h"

#include <algorithm>

#include "cpu/cpu_backend.h"
#include "cpu/weight_arena.h"
#include "model/weights.h"
#include "util/str.h"

namespace straw {

RamNeed ram_need(const gguf::Reader& r, const sched::Plan& p, cpu::Isa isa, bool repack,
                 int sessions) {
  RamNeed n;
  // The backend of a tensor is its unit's (model::DeviceMap is per unit: attention, FFN, experts, output);
  // --override-tensor moves whole units through their defining tensors (sched/plan.cpp).
  auto device_of = [&](const sched::UnitOf& u) {
    const bool in_layer = u.layer >= 0 && size_t(u.layer) < p.layers.size();
    if (u.part == sched::Part::Attn && in_layer) return p.layers[size_t(u.layer)].attn;
    if (u.part == sched::Part::Ffn && in_layer) return p.layers[size_t(u.layer)].ffn;
    if (u.part == sched::Part::Experts && in_layer) return p.layers[size_t(u.layer)].experts;
    if (u.part == sched::Part::Output) return p.output;
    return sched::Device::Cpu;
  };
  auto add_cpu = [&](const ops::Weight& w, uint64_t file_bytes) {
    const size_t copy = cpu::weight_copy_bytes(w, isa, repack);
    (copy > 0 ? n.weights : n.mapped) += copy > 0 ? copy : file_bytes;
  };
  bool has_output = false;
  for (const gguf::TensorInfo& t : r.tensors()) {
    const sched::UnitOf u = sched::unit_of(t.name);
    has_output = has_output || t.name == "output.weight";
    if (u.part == sched::Part::Embedding) {
      n.mapped += t.bytes;  // one row read per token, from the mapping
      continue;
    }
    if (device_of(u) != sched::Device::Cpu) continue;
    ops::Weight w = model::weight_view(r, t.name);
    // qwen35's conv taps are read in place as one vector (model/weights.cpp): never copied.
    if (t.name.find("ssm_conv1d") != std::string::npos) w.n_out = 1;
    add_cpu(w, t.bytes);
  }
  // Tied embeddings: the LM head is token_embd, prepared (copied) by the output's backend.
  if (!has_output && p.output == sched::Device::Cpu && r.find_tensor("token_embd.weight"))
    n.weights += cpu::weight_copy_bytes(model::weight_view(r, "token_embd.weight"), isa, repack);
  n.kv = p.kv_cpu_bytes * uint64_t(std::max(sessions, 1));
  n.state = (p.state_cpu_bytes + p.state_checkpoint_bytes) * uint64_t(std::max(sessions, 1));
  n.compute = p.compute_cpu_bytes;
  return n;
}

RamCheck check_ram(const gguf::Reader& r, const sched::Plan& p, int64_t ctx, cpu::Isa isa,
                   bool repack, int sessions) {
  RamCheck c;
  c.need = ram_need(r, p, isa, repack, sessions);
  c.need_in_place = repack ? ram_need(r, p, isa, false, sessions) : c.need;
  c.sessions = sessions;
  c.available = cpu::available_memory(&c.source);
  c.ctx = ctx;
  c.repack = repack;
  return c;
}

namespace {

#ifdef STRAW_HAVE_CUDA
constexpr const char* kGpuHint =
    "\n  - a VRAM budget to put layers on the GPU (--vram-budget 8GiB)";
#else
constexpr const char* kGpuHint =
    "\n  - put layers on a GPU: this straw is built without CUDA (rebuild with -DSTRAW_CUDA=ON), "
    "then give a VRAM budget (--vram-budget 8GiB)";
#endif

std::string breakdown(const RamCheck& c, const RamNeed& n) {
  return str(human_bytes(n.weights), " of weight copies, ", human_bytes(n.kv),
             " of KV cache at ctx ", c.ctx,
             c.sessions > 1 ? str(" for ", c.sessions, " sessions") : std::string(),
             n.state ? str(", ", human_bytes(n.state), " of recurrent state and its checkpoints")
                     : std::string(),
             ", ", human_bytes(n.compute), " of compute buffers");
}

}  // namespace

std::string ram_summary(const RamCheck& c) {
  return str("needs ", human_bytes(c.need.total()), " of RAM (", breakdown(c, c.need), ") of ",
             c.available ? human_bytes(c.available) : std::string("an unknown amount"),
             " available (", c.source, ")");
}

std::string ram_shortfall(const RamCheck& c, const sched::Plan& p) {
  if (c.fits()) return {};
  const RamNeed& n = c.need;
  std::string s =
      str("the model does not fit in memory: it needs ", human_bytes(n.total()), " of RAM (",
          breakdown(c, n), ") but ", human_bytes(c.available), " is available (", c.source, ")");
  if (p.vram_budget > 0)
    s += str(", with ", human_bytes(p.gpu_weight_bytes), " of weights on the GPU (",
             human_bytes(p.vram_bytes), " of a ", human_bytes(p.vram_budget), " VRAM budget)");
  else
    s += ", with nothing on a GPU (VRAM budget 0)";
  s += ". What to do:";
  // RAM the weight copies may take at this context: what a smaller quantization has to fit in.
  const uint64_t others = n.kv + n.compute + n.state;
  const uint64_t room = c.available > others ? c.available - others : 0;
  if (n.weights > 0 && room > 0) {
    s += str("\n  - a smaller quantization of the model: at this context ", human_bytes(room),
             " of RAM is left for the CPU's weight copies (they take ", human_bytes(n.weights),
             " in this one)");
  }
  s += p.vram_budget > 0 ? "\n  - a larger VRAM budget (--vram-budget), if the GPU has room"
                         : kGpuHint;
  if (n.kv > 0)
    s +=
        str("\n  - a smaller context (--ctx; the KV cache takes ", human_bytes(n.kv), " at ", c.ctx,
            c.sessions > 1
                ? str(" for ", c.sessions, " sessions; or fewer sessions: straw serve --parallel")
                : std::string(),
            ") or --kv-type q8_0 (half the KV cache)");
  if (c.repack) {
    const RamNeed& m = c.need_in_place;
    s += str("\n  - --no-repack: use the weights from the file mapping instead of copies (then ",
             human_bytes(m.total()), " of RAM", m.total() <= c.available ? "" : ", still too much",
             "); slower: matmuls repack on the fly, and weights the page cache cannot hold are "
             "read from disk at every token");
  }
  return s;
}

}  // namespace straw
