#include "model_flags.h"

#include <chrono>
#include <cstdio>

#include "util/str.h"

namespace straw::cli {

std::vector<Option> model_options() {
  return {
      {"model", 'm', true, "FILE  GGUF model (first shard of a split model)"},
      {"threads", 't', true, "N  worker threads (default: physical cores)"},
      {"ctx", 'c', true, "N  context length (default: min(model context, 4096))"},
      {"ubatch", 0, true, "N  prompt tokens per forward pass (default 512)"},
      {"kv-type", 0, true, "TYPE  KV cache type: f16 (default) or f32"},
  };
}

ModelOptions model_options_from(const Args& args) {
  ModelOptions o;
  o.path = args.require("model");
  o.threads = static_cast<int>(args.get_int("threads", 0));
  o.ctx = static_cast<int>(args.get_int("ctx", 0));
  o.ubatch = static_cast<int>(args.get_int("ubatch", 512));
  if (o.threads < 0) throw UsageError("--threads must be >= 0");
  if (o.ctx < 0) throw UsageError("--ctx must be >= 0");
  if (o.ubatch < 1) throw UsageError("--ubatch must be >= 1");
  std::string kv = args.get_or("kv-type", "f16");
  if (kv == "f16") o.kv_type = KvCacheType::F16;
  else if (kv == "f32") o.kv_type = KvCacheType::F32;
  else throw UsageError("--kv-type must be f16 or f32, got '" + kv + "'");
  return o;
}

std::unique_ptr<Model> load_model_verbose(const ModelOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  auto model = Model::load(o);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const ModelInfo& i = model->info();
  std::fprintf(stderr, "straw: loaded %s (%s, %d layers, %s) in %.2f s; %d threads, ctx %d\n",
               i.name.c_str(), i.architecture.c_str(), i.n_layer,
               human_bytes(i.weight_bytes).c_str(), s, model->options().threads,
               model->options().ctx);
  return model;
}

}  // namespace straw::cli
