#include "model_flags.h"

#include <chrono>
#include <cstdio>

#include "load_progress.h"
#include "placement_flags.h"
#include "util/str.h"

namespace straw::cli {

std::vector<Option> model_options() {
  std::vector<Option> o = {
      {"model", 'm', true, "FILE  GGUF model (first shard of a split model)"},
      {"threads", 't', true, "N  worker threads (default: physical cores)"},
      {"ctx", 'c', true, "N  context length (default: min(model context, 4096))"},
      {"ubatch", 0, true, "N  prompt tokens per forward pass (default 512)"},
      {"device", 0, true, "DEV  auto (default: GPU when built with CUDA and present), cpu, gpu"},
      {"no-cuda-graphs", 0, false, "launch the decode step's kernels one by one (for comparison)"},
      cpu_kernels_option(),
      no_repack_option(),
      quiet_option(),
  };
  std::vector<Option> p = placement_options();
  o.insert(o.end(), p.begin(), p.end());
  std::vector<Option> kv = kv_type_options();
  o.insert(o.end(), kv.begin(), kv.end());
  return o;
}

std::vector<Option> kv_type_options() {
  return {
      {"kv-type", 0, true,
       "TYPE  K and V cache type: f16 (default), f32, q8_0 or q4_0 (quantized: CPU only)"},
      {"cache-type-k", 0, true, "TYPE  K cache type (over --kv-type)", "ctk"},
      {"cache-type-v", 0, true, "TYPE  V cache type (over --kv-type)", "ctv"},
  };
}

namespace {

KvCacheType kv_type_named(const std::string& option, const std::string& name) {
  if (name == "f16") return KvCacheType::F16;
  if (name == "f32") return KvCacheType::F32;
  if (name == "q8_0") return KvCacheType::Q8_0;
  if (name == "q4_0") return KvCacheType::Q4_0;
  throw UsageError("--" + option + " must be f16, f32, q8_0 or q4_0, got '" + name + "'");
}

}  // namespace

void set_kv_types(const Args& args, ModelOptions& o) {
  const KvCacheType both = kv_type_named("kv-type", args.get_or("kv-type", "f16"));
  o.kv_type_k =
      args.has("cache-type-k") ? kv_type_named("cache-type-k", args.require("cache-type-k")) : both;
  o.kv_type_v =
      args.has("cache-type-v") ? kv_type_named("cache-type-v", args.require("cache-type-v")) : both;
}

Option cpu_kernels_option() {
  return {"cpu-kernels", 0, true,
          "ISA  auto (default), amx, avx512, avx-vnni, avx2 or scalar: force a kernel level"};
}

CpuKernels cpu_kernels_from(const Args& args) {
  const std::string k = args.get_or("cpu-kernels", "auto");
  if (k == "auto") return CpuKernels::Auto;
  if (k == "amx") return CpuKernels::Amx;
  if (k == "avx512") return CpuKernels::Avx512;
  if (k == "avx-vnni") return CpuKernels::AvxVnni;
  if (k == "avx2") return CpuKernels::Avx2;
  if (k == "scalar") return CpuKernels::Scalar;
  throw UsageError("--cpu-kernels must be auto, amx, avx512, avx-vnni, avx2 or scalar, got '" + k +
                   "'");
}

Option no_repack_option() {
  return {"no-repack", 0, false,
          "use the weights from the file mapping, not repacked copies in RAM (slower; for models "
          "larger than RAM)"};
}

Option quiet_option() {
  return {"quiet", 'q', false, "no load progress and no load report on stderr"};
}

namespace {
std::string a_device(const Args& args) {
  return args.get_or("device", "auto");
}
}  // namespace

ModelOptions model_options_from(const Args& args) {
  ModelOptions o;
  o.path = args.require("model");
  o.threads = static_cast<int>(args.get_int("threads", 0));
  o.ctx = static_cast<int>(args.get_int("ctx", 0));
  o.ubatch = static_cast<int>(args.get_int("ubatch", 512));
  if (o.threads < 0) throw UsageError("--threads must be >= 0");
  if (o.ctx < 0) throw UsageError("--ctx must be >= 0");
  if (o.ubatch < 1) throw UsageError("--ubatch must be >= 1");
  set_kv_types(args, o);
  o.cpu_kernels = cpu_kernels_from(args);
  std::string dev = a_device(args);
  if (dev == "auto")
    o.device = DeviceChoice::Auto;
  else if (dev == "cpu")
    o.device = DeviceChoice::Cpu;
  else if (dev == "gpu" || dev == "cuda")
    o.device = DeviceChoice::Gpu;
  else
    throw UsageError("--device must be auto, cpu or gpu, got '" + dev + "'");
  const sched::PlanOptions po = plan_options_from(args);
  if (args.has("vram-budget")) o.vram_budget = po.vram_budget;
  if (po.gpu_layers) o.gpu_layers = *po.gpu_layers;
  o.n_cpu_moe = po.n_cpu_moe;
  for (const auto& ov : po.overrides)
    o.tensor_overrides.push_back({ov.pattern, ov.device == sched::Device::Gpu});
  o.cuda_graphs = !args.has("no-cuda-graphs");
  o.repack_weights = !args.has("no-repack");
  return o;
}

std::unique_ptr<Model> load_model_verbose(ModelOptions o, bool quiet) {
  LoadProgressPrinter printer(quiet, stderr_is_terminal());
  o.on_progress = printer.callback();
  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Model> model;
  try {
    model = Model::load(o);
  } catch (...) {
    printer.abandon();
    throw;
  }
  printer.finish();
  if (quiet) return model;
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const ModelInfo& i = model->info();
  std::fprintf(stderr, "straw: loaded %s (%s, %d layers, %s) in %.2f s; %d threads, ctx %d; %s\n",
               i.name.c_str(), i.architecture.c_str(), i.n_layer,
               human_bytes(i.weight_bytes).c_str(), s, model->options().threads,
               model->options().ctx, i.placement.c_str());
  std::fprintf(stderr, "straw: weights: %s; RAM %s of %s available\n", i.weights.c_str(),
               human_bytes(i.ram_bytes).c_str(),
               i.ram_available ? human_bytes(i.ram_available).c_str() : "an unknown amount");
  return model;
}

}  // namespace straw::cli
