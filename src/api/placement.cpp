// Choosing backends for a model: the CPU backend always; a GPU backend when the build has CUDA,
// a GPU is usable and the placement plan puts something on it.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "api/memory.h"
#include "api/model_impl.h"
#include "cpu/thread_pool.h"
#include "util/str.h"
#ifdef STRAW_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace straw {

namespace {

bool wants_gpu(const ModelOptions& o) {
  if (o.device == DeviceChoice::Cpu) return false;
  if (o.vram_budget && *o.vram_budget == 0) return false;
  return true;
}

// Whether the environment variable `name` is "1".
bool opted_in(const char* name) {
  const char* e = std::getenv(name);
  return e && std::strcmp(e, "1") == 0;
}

}  // namespace

bool linear_attention_on_gpu() {
  return opted_in("STRAW_CUDA_LINEAR_ATTENTION");
}

bool moe_on_gpu() {
  return opted_in("STRAW_CUDA_MOE");
}

sched::Plan plan_model(const Model::Impl& m, uint64_t vram_budget) {
  std::vector<sched::TensorDesc> tensors;
  for (const auto& t : m.reader->tensors()) tensors.push_back({t.name, t.bytes, t.n_elements()});
  sched::PlanOptions po;
  po.vram_budget = vram_budget;
  po.ctx = m.n_ctx;
  po.kv_type_k = kv_type(m.options.kv_type_k);
  po.kv_type_v = kv_type(m.options.kv_type_v);
  po.ubatch = m.options.ubatch;
  po.n_cpu_moe = m.options.n_cpu_moe;
  po.gpu_moe = moe_on_gpu();
  // Without a budget everything is on the CPU whatever was forced (choose_backends has refused
  // GPU requests it cannot serve).
  if (vram_budget > 0) {
    if (m.options.gpu_layers) po.gpu_layers = *m.options.gpu_layers;
    for (const TensorOverride& o : m.options.tensor_overrides)
      po.overrides.push_back({o.pattern, o.gpu ? sched::Device::Gpu : sched::Device::Cpu});
    // The CUDA attention reads f16 or f32 caches (K and V of one type): otherwise attention and
    // its cache stay on the CPU (the FFNs may still go to the GPU). An override that puts
    // attention tensors on the GPU is refused by choose_backends.
    po.cpu_attention = ops::kv_quantized(kv_type(m.options.kv_type_k)) ||
                       m.options.kv_type_k != m.options.kv_type_v;
  }
  return sched::make_plan(model::plan_shape(m.hp, m.hp.n_vocab), tensors, po,
                          sched::load_speeds(sched::calibration_path()));
}

namespace {

// Refuses (straw::Error) before anything is prepared when the placement's RAM does not fit.
void check_memory(Model::Impl& m) {
  const RamCheck c = check_ram(*m.reader, m.plan, m.n_ctx, m.cpu->isa(), m.options.repack_weights,
                               m.options.sessions);
  m.info.ram_bytes = c.need.total();
  m.info.ram_available = c.available;
  if (!c.fits()) fail(m.reader->path(), ": ", ram_shortfall(c, m.plan));
}

}  // namespace

void choose_backends(Model::Impl& m) {
  const ModelOptions& o = m.options;
  m.cpu = std::make_unique<cpu::CpuBackend>(cpu::CpuOptions{
      .n_threads = o.threads, .isa = cpu_isa(o.cpu_kernels), .copy_weights = o.repack_weights});
  m.devices = model::DeviceMap::single(*m.cpu, m.hp.n_layer);
  m.info.placement = "cpu";
  // Everything on the CPU: the plan only accounts memory.
  auto cpu_only = [&] {
    m.plan = plan_model(m, 0);
    check_memory(m);
  };
  if (!wants_gpu(o)) {
    if (o.gpu_layers.value_or(0) > 0)
      fail(
          "--gpu-layers was given but the placement is CPU only (--device cpu or --vram-budget 0)");
    cpu_only();
    return;
  }
#ifdef STRAW_HAVE_CUDA
  if ((m.hp.has_recurrent() || m.hp.attn_output_gate) && !linear_attention_on_gpu()) {
    if (o.device == DeviceChoice::Gpu || o.gpu_layers.value_or(0) > 0 ||
        std::any_of(o.tensor_overrides.begin(), o.tensor_overrides.end(),
                    [](const TensorOverride& t) { return t.gpu; }))
      fail("a GPU placement was requested, but ", m.hp.arch_name,
           " models run on the CPU only so far (the GPU kernels of their linear-attention layers "
           "are not verified on a GPU yet; STRAW_CUDA_LINEAR_ATTENTION=1 tries them): use "
           "--device cpu");
    m.info.placement = str("cpu (", m.hp.arch_name, "'s GPU kernels are not verified yet)");
    cpu_only();
    return;
  }
  std::string why;
  if (!cuda::cuda_available(&why)) {
    if (o.device == DeviceChoice::Gpu || o.gpu_layers.value_or(0) > 0)
      fail("a GPU was requested but none can be used: ", why);
    cpu_only();
    return;
  }
  cuda::CudaOptions co;
  co.vram_budget = o.vram_budget.value_or(0);
  co.graphs = o.cuda_graphs;
  auto gpu = std::make_unique<cuda::CudaBackend>(co);
  const uint64_t budget = o.vram_budget ? *o.vram_budget : cuda::default_vram_budget(co.device);
  m.plan = plan_model(m, budget);
  auto pick = [&](sched::Device d) -> ops::Backend* {
    return d == sched::Device::Gpu ? static_cast<ops::Backend*>(gpu.get()) : m.cpu.get();
  };
  for (const sched::LayerPlacement& l : m.plan.layers) {
    m.devices.attn[l.index] = pick(l.attn);
    m.devices.ffn[l.index] = pick(l.ffn);
    m.devices.experts[l.index] = pick(l.experts);
  }
  m.devices.output = pick(m.plan.output);
  // Everything on the GPU: the embedding lookup too (its table stays in host memory; the GPU
  // gathers the step's rows), so one backend runs the whole step and can replay it as a CUDA Graph.
  const bool all_gpu =
      m.plan.output == sched::Device::Gpu &&
      std::all_of(m.plan.layers.begin(), m.plan.layers.end(), [](const sched::LayerPlacement& l) {
        return l.attn == sched::Device::Gpu && l.ffn == sched::Device::Gpu &&
               l.experts == sched::Device::Gpu;
      });
  if (all_gpu) m.devices.embed = gpu.get();
  // The CUDA kernels read f16 or f32 caches, K and V of one type.
  const bool gpu_kv_ok = !ops::kv_quantized(kv_type(o.kv_type_k)) && o.kv_type_k == o.kv_type_v;
  if (!gpu_kv_ok &&
      std::any_of(m.plan.layers.begin(), m.plan.layers.end(),
                  [](const sched::LayerPlacement& l) { return l.attn == sched::Device::Gpu; }))
    fail("a ", ops::kv_type_name(kv_type(o.kv_type_k)), " / ",
         ops::kv_type_name(kv_type(o.kv_type_v)),
         " (K / V) KV cache runs on the CPU only so far (the GPU reads f16 or f32 caches, K and V "
         "of one type), and this placement puts attention on the GPU: use --kv-type f16, or "
         "--device cpu");
  check_memory(m);
  // One device arena for every weight the plan puts on the GPU, sized before anything is uploaded.
  uint64_t arena = 0;
  model::for_each_placed_weight(m.weights, m.devices, [&](ops::Weight& w, ops::Backend& be) {
    if (&be == gpu.get()) arena += cuda::CudaBackend::prepared_bytes(w);
  });
  if (arena > 0) gpu->reserve_weights(arena);
  m.gpu = std::move(gpu);
  int gpu_units = 0, moe_layers = 0, gpu_experts = 0;
  for (const auto& l : m.plan.layers) {
    gpu_units += (l.attn == sched::Device::Gpu) + (l.ffn == sched::Device::Gpu);
    moe_layers += l.expert_bytes > 0;
    gpu_experts += l.expert_bytes > 0 && l.experts == sched::Device::Gpu;
  }
  m.info.placement =
      str("gpu: ", gpu_units, "/", 2 * m.hp.n_layer, " layer parts",
          m.plan.output == sched::Device::Gpu ? " + output" : "",
          moe_layers > 0 ? str(", the experts of ", gpu_experts, "/", moe_layers, " layers") : "",
          ", ", human_bytes(m.plan.vram_bytes), " of ", human_bytes(budget), " VRAM");
#else
  if (o.device == DeviceChoice::Gpu || o.gpu_layers.value_or(0) > 0 ||
      std::any_of(o.tensor_overrides.begin(), o.tensor_overrides.end(),
                  [](const TensorOverride& t) { return t.gpu; }) ||
      (o.vram_budget && *o.vram_budget > 0))
    fail(
        "GPU placement was requested, but this straw was built without CUDA "
        "(rebuild with -DSTRAW_CUDA=ON on a machine with the CUDA Toolkit)");
  cpu_only();
#endif
}

}  // namespace straw
