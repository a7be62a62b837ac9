// Options shared by the commands that load a model (run, eval, perplexity, bench).
#pragma once

#include <vector>

#include "cli.h"
#include "straw/straw.h"

namespace straw::cli {

// -m/--model, -t/--threads, -c/--ctx, --ubatch, --kv-type, --device, --no-cuda-graphs,
// --cpu-kernels, --no-repack, --quiet and the placement options.
std::vector<Option> model_options();
ModelOptions model_options_from(const Args& args);

// --no-repack: ModelOptions::repack_weights = false.
Option no_repack_option();
// --quiet: no load progress and no load report on stderr.
Option quiet_option();

// --kv-type TYPE (both caches), --cache-type-k/-ctk TYPE and --cache-type-v/-ctv TYPE (one each,
// over --kv-type); TYPE: f16, f32, q8_0, q4_0 (llama.cpp's names).
std::vector<Option> kv_type_options();
void set_kv_types(const Args& args, ModelOptions& o);

// --cpu-kernels auto|avx512|avx-vnni|avx2|scalar (run, eval, perplexity, bench).
Option cpu_kernels_option();
CpuKernels cpu_kernels_from(const Args& args);

// Loads the model showing progress on stderr (load_progress.h), then prints (unless quiet)
//   straw: load: mapped SIZE; repacked SIZE in S s (RATE); uploaded SIZE in S s (RATE)
//   straw: loaded NAME (ARCH, N layers, SIZE) in S s; T threads, ctx N; PLACEMENT
//   straw: weights: WHERE THEY ARE; RAM SIZE of SIZE available
std::unique_ptr<Model> load_model_verbose(ModelOptions o, bool quiet = false);

}  // namespace straw::cli
