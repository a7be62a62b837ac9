#include "placement_flags.h"

#include <algorithm>
#include <limits>

namespace straw::cli {

std::vector<Option> placement_options() {
  return {
      {"vram-budget", 0, true,
       "SIZE  GPU memory the plan may use (8GiB, 7.5G, 512MiB, bytes; 0: CPU only)"},
      {"gpu-layers", 0, true,
       "N  llama.cpp's -ngl: the last N layers on the GPU (all: every layer and the output)"},
      {"override-tensor", 0, true,
       "REGEX=gpu|cpu  place matching tensors (repeatable or comma-separated; first match wins)"},
      moe_options()[0],
      moe_options()[1],
  };
}

std::vector<Option> moe_options() {
  return {
      {"cpu-moe", 0, false,
       "keep every mixture-of-experts layer's experts (ffn_*_exps) on the CPU"},
      {"n-cpu-moe", 0, true, "N  keep the experts (ffn_*_exps) of the first N layers on the CPU"},
  };
}

int n_cpu_moe_from(const Args& a) {
  // llama.cpp's meaning: --cpu-moe is every layer, --n-cpu-moe N the first N (both: every layer).
  if (a.has("cpu-moe")) return std::numeric_limits<int>::max();
  if (!a.has("n-cpu-moe")) return 0;
  const int64_t n = a.get_int("n-cpu-moe", 0);
  if (n < 0) throw UsageError("--n-cpu-moe must be >= 0, got " + std::to_string(n));
  return static_cast<int>(std::min<int64_t>(n, std::numeric_limits<int>::max()));
}

namespace {

sched::KvType parse_kv_type(const std::string& option, const std::string& s) {
  if (s == "f16") return sched::KvType::F16;
  if (s == "q8_0") return sched::KvType::Q8_0;
  if (s == "q4_0") return sched::KvType::Q4_0;
  if (s == "f32") return sched::KvType::F32;
  throw UsageError("--" + option + " must be f16, q8_0, q4_0 or f32, got '" + s + "'");
}

}  // namespace

void set_plan_kv_types(const Args& a, sched::PlanOptions& po) {
  const sched::KvType both = parse_kv_type("kv-type", a.get_or("kv-type", "f16"));
  po.kv_type_k =
      a.has("cache-type-k") ? parse_kv_type("cache-type-k", a.require("cache-type-k")) : both;
  po.kv_type_v =
      a.has("cache-type-v") ? parse_kv_type("cache-type-v", a.require("cache-type-v")) : both;
}

std::vector<sched::KvType> plan_kv_type_list(const Args& a) {
  std::vector<sched::KvType> out;
  const std::string v = a.get_or("kv-type", "f16");
  size_t start = 0;
  for (;;) {
    const size_t comma = v.find(',', start);
    out.push_back(parse_kv_type("kv-type", v.substr(start, comma - start)));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

sched::PlanOptions plan_options_from(const Args& a) {
  sched::PlanOptions po;
  po.vram_budget = a.has("vram-budget") ? parse_size(a.require("vram-budget")) : 0;
  if (auto n = a.get("gpu-layers")) {
    if (*n == "all")
      po.gpu_layers = 1 << 30;
    else
      po.gpu_layers = static_cast<int>(a.get_int("gpu-layers", 0));
    if (*po.gpu_layers < 0) throw UsageError("--gpu-layers must be >= 0 or 'all'");
  }
  po.n_cpu_moe = n_cpu_moe_from(a);
  for (const std::string& value : a.get_all("override-tensor")) {
    const std::string* ov = &value;
    // Repeatable, and each value may hold comma-separated REGEX=DEVICE pairs (as llama.cpp's -ot).
    size_t start = 0;
    while (start <= ov->size()) {
      size_t comma = ov->find(',', start);
      if (comma == std::string::npos) comma = ov->size();
      const std::string item = ov->substr(start, comma - start);
      const size_t eq = item.rfind('=');
      if (eq == std::string::npos || eq == 0)
        throw UsageError("--override-tensor expects REGEX=gpu|cpu, got '" + item + "'");
      const std::string dev = item.substr(eq + 1);
      sched::Device d;
      if (dev == "gpu" || dev == "cuda" || dev == "CUDA0")
        d = sched::Device::Gpu;
      else if (dev == "cpu" || dev == "CPU")
        d = sched::Device::Cpu;
      else
        throw UsageError("--override-tensor: device must be gpu or cpu, got '" + dev + "'");
      po.overrides.push_back({item.substr(0, eq), d});
      start = comma + 1;
    }
  }
  return po;
}

}  // namespace straw::cli
