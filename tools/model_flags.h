// Options shared by the commands that load a model (run, eval, perplexity, bench).
#pragma once

#include <vector>

#include "cli.h"
#include "straw/straw.h"

namespace straw::cli {

// -m/--model, -t/--threads, -c/--ctx, --ubatch, --kv-type
std::vector<Option> model_options();
ModelOptions model_options_from(const Args& args);

// --kv-type f16|f32|q8_0.
KvCacheType kv_type_from(const Args& args);

// --cpu-kernels auto|avx512|avx-vnni|avx2|scalar (run, eval, perplexity, bench).
Option cpu_kernels_option();
CpuKernels cpu_kernels_from(const Args& args);

// Prints "loaded NAME (arch, N layers, SIZE) in S s" to stderr.
std::unique_ptr<Model> load_model_verbose(const ModelOptions& o);

}  // namespace straw::cli
