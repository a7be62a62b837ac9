// straw synth: write a GGUF model of a real model's shape (or any shape) with random weights.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "cli.h"
#include "model/presets.h"
#include "model/synth.h"
#include "util/str.h"

namespace straw::cli {
namespace {

std::vector<Option> synth_options() {
  return {
      {"preset", 0, true, "NAME  a real model's shape (see --list)"},
      {"arch", 0, true,
       "A  custom shape: llama, qwen2, qwen3, qwen35 (Qwen3.5 proportions), qwen3moe or qwen35moe "
       "(with --experts)"},
      {"layers", 0, true,
       "N  custom shape: blocks; with --preset: keep the first N layers (typed as in the full "
       "model), so a benchmark file of a real model's width fits in RAM"},
      {"embd", 0, true, "E  custom shape: embedding width"},
      {"ff", 0, true, "F  custom shape: feed-forward width"},
      {"heads", 0, true, "H  custom shape: attention heads"},
      {"kv-heads", 0, true, "K  custom shape: key/value heads"},
      {"head-dim", 0, true, "D  custom shape: head size (default embd/heads)"},
      {"vocab", 0, true, "V  custom shape: vocabulary size (default 32000)"},
      {"tied", 0, false, "custom shape: no output.weight (the LM head is token_embd)"},
      {"experts", 0, true, "N  custom qwen3moe / qwen35moe shape: routed experts per layer"},
      {"experts-used", 0, true, "K  custom MoE shape: experts per token (default 2)"},
      {"ff-exp", 0, true, "F  custom MoE shape: an expert's FFN width (default --ff)"},
      {"ff-shexp", 0, true,
       "F  custom qwen35moe shape: the shared expert's FFN width (default --ff-exp)"},
      {"mtp", 0, true,
       "N  qwen35: append N MTP / NextN blocks (as converted checkpoints may hold)"},
      {"type", 0, true, "FTYPE  IQ4_XS, Q4_K_M, Q4_K_S, Q5_K_M, Q6_K, Q8_0 or F16"},
      {"output", 'o', true, "FILE  where to write the model"},
      {"seed", 0, true, "S  random seed (default 0); the same seed gives the same bytes"},
      {"no-data", 0, false, "write the header only; the data is a sparse hole of zeros"},
      {"threads", 't', true, "N  generator threads (default: all hardware threads)"},
      {"list", 0, false, "list the presets and exit"},
      {"ctx-train", 0, true, "N  the context_length written (default: the shape's)"},
      {"rope-scaling", 0, true, "TYPE  write RoPE scaling metadata: none, linear or yarn"},
      {"rope-scale", 0, true, "F  with --rope-scaling: rope.scaling.factor"},
      {"yarn-orig-ctx", 0, true,
       "N  with --rope-scaling: rope.scaling.original_context_length (default: none written)"},
  };
}

const char* const kCustomFlags[] = {"arch",     "embd",         "ff",     "heads",
                                    "kv-heads", "head-dim",     "vocab",  "tied",
                                    "experts",  "experts-used", "ff-exp", "ff-shexp"};

int32_t positive_int(const Args& a, const char* name) {
  const int64_t v = a.get_int(name, 0);
  if (v <= 0 || v > INT32_MAX) throw UsageError(str("--", name, " must be a positive integer"));
  return static_cast<int32_t>(v);
}

model::ModelShape shape_from(const Args& a) {
  if (auto preset = a.get("preset")) {
    for (const char* f : kCustomFlags)
      if (a.has(f)) throw UsageError(str("--preset and --", f, " exclude each other"));
    const model::ModelShape* s = model::find_preset(*preset);
    if (!s)
      throw UsageError(
          str("unknown preset '", *preset, "' (presets: ", model::preset_names(), ")"));
    if (!a.has("layers")) return *s;
    const int32_t n = positive_int(a, "layers");
    if (n > s->n_layer)
      throw UsageError(str("--layers ", n, ": the preset ", s->name, " has ", s->n_layer,
                           " layers (keep 1 to ", s->n_layer, ")"));
    return model::first_layers(*s, n);
  }
  if (!a.has("arch"))
    throw UsageError(
        "give --preset NAME, or a custom shape: --arch --layers --embd --ff --heads "
        "--kv-heads");
  const std::string arch_s = a.require("arch");
  const auto arch = model::arch_from_name(arch_s);
  if (!arch)
    throw UsageError(str("--arch must be llama, qwen2, qwen3, qwen35, qwen3moe or qwen35moe, got '",
                         arch_s, "'"));
  const int head_dim = a.has("head-dim") ? positive_int(a, "head-dim") : 0;
  const int64_t vocab = a.has("vocab") ? positive_int(a, "vocab") : 0;
  model::ModelShape s = model::custom_shape(
      *arch, positive_int(a, "layers"), positive_int(a, "embd"), positive_int(a, "ff"),
      positive_int(a, "heads"), positive_int(a, "kv-heads"), head_dim, vocab, a.has("tied"));
  const bool moe = *arch == model::Arch::Qwen3Moe || *arch == model::Arch::Qwen35Moe;
  if (moe) {
    if (!a.has("experts"))
      throw UsageError(str("--arch ", arch_s,
                           " needs --experts N (and optionally --experts-used K, --ff-exp F)"));
    if (*arch == model::Arch::Qwen3Moe && a.has("ff-shexp"))
      throw UsageError("--ff-shexp is for qwen35moe (qwen3moe has no shared expert)");
    const int64_t ff_exp = a.has("ff-exp") ? positive_int(a, "ff-exp") : s.n_ff;
    s = model::with_experts(s, positive_int(a, "experts"),
                            a.has("experts-used") ? positive_int(a, "experts-used") : 2, ff_exp,
                            *arch == model::Arch::Qwen35Moe
                                ? (a.has("ff-shexp") ? positive_int(a, "ff-shexp") : ff_exp)
                                : 0);
  } else {
    for (const char* f : {"experts", "experts-used", "ff-exp", "ff-shexp"})
      if (a.has(f)) throw UsageError(str("--", f, " is for --arch qwen3moe or qwen35moe"));
  }
  try {
    model::check_shape(s);
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  return s;
}

void print_presets() {
  std::printf("%-14s %-8s %6s %7s %7s %5s %4s %5s %8s %-6s %12s %s\n", "preset", "arch", "layers",
              "embd", "ff", "heads", "kv", "head", "vocab", "output", "params", "experts");
  for (const model::ModelShape& s : model::presets())
    std::printf(
        "%-14s %-8s %6d %7lld %7lld %5d %4d %5d %8lld %-6s %12lld %s\n", s.name.c_str(),
        model::arch_name(s.arch), s.n_layer, static_cast<long long>(s.n_embd),
        static_cast<long long>(s.n_ff), s.n_head, s.n_head_kv, s.head_dim,
        static_cast<long long>(s.n_vocab), s.tied ? "tied" : "own",
        static_cast<long long>(s.n_params()),
        s.n_expert > 0 ? str(s.n_expert_used, " of ", s.n_expert, " x ", s.n_ff_exp).c_str() : "");
}

int run_synth(const Args& a) {
  if (a.has("list")) {
    print_presets();
    return 0;
  }
  if (!a.positional().empty())
    throw UsageError("unexpected argument '" + a.positional()[0] + "' (the file goes after -o)");
  model::SynthOptions o;
  o.shape = shape_from(a);
  if (a.has("mtp")) {
    if (!o.shape.qwen35_layers()) throw UsageError("--mtp is for qwen35 / qwen35moe shapes");
    const int64_t mtp = a.get_int("mtp", 0);
    if (mtp < 0 || mtp > 8) throw UsageError("--mtp must be 0..8");
    o.shape.n_mtp = static_cast<int>(mtp);
  }
  if (a.has("ctx-train")) o.shape.n_ctx_train = positive_int(a, "ctx-train");
  if (a.has("rope-scaling")) {
    const std::string rs = a.require("rope-scaling");
    if (rs != "none" && rs != "linear" && rs != "yarn")
      throw UsageError("--rope-scaling must be none, linear or yarn, got '" + rs + "'");
    const double f = a.get_float("rope-scale", 0.0);
    if (rs != "none" && !(f > 0.0))
      throw UsageError("--rope-scaling needs a positive --rope-scale");
    o.shape.rope_scaling = rs;
    o.shape.rope_scaling_factor = static_cast<float>(f);
    if (a.has("yarn-orig-ctx")) o.shape.rope_scaling_orig_ctx = positive_int(a, "yarn-orig-ctx");
  } else if (a.has("rope-scale") || a.has("yarn-orig-ctx")) {
    throw UsageError("--rope-scale and --yarn-orig-ctx go with --rope-scaling");
  }
  const std::string type = a.require("type");
  const auto ft = model::file_type_from_name(type);
  if (!ft)
    throw UsageError(str("unknown --type '", type, "' (types: ", model::file_type_names(), ")"));
  o.type = *ft;
  const std::string path = a.require("output");
  const int64_t seed = a.get_int("seed", 0);
  if (seed < 0) throw UsageError("--seed must be >= 0");
  o.seed = static_cast<uint64_t>(seed);
  o.no_data = a.has("no-data");
  const int64_t threads = a.get_int("threads", 0);
  if (threads < 0 || threads > 256) throw UsageError("--threads must be 0..256");
  o.threads = static_cast<int>(threads);

  const auto t0 = std::chrono::steady_clock::now();
  // Progress goes to a terminal only (a log file would get a line per percent).
  const bool tty = ::isatty(::fileno(stderr)) != 0;
  int last_percent = -1;
  auto progress = [&](uint64_t done, uint64_t total) {
    if (!tty) return;
    const int percent = total ? static_cast<int>(100 * done / total) : 100;
    if (percent == last_percent) return;
    last_percent = percent;
    std::fprintf(stderr, "\rstraw synth: %3d%% of %s", percent, human_bytes(total).c_str());
  };
  const model::SynthStats st = model::synthesize(path, o, progress);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (last_percent >= 0) std::fprintf(stderr, "\n");
  std::printf("wrote %s: %s %s (%s), %zu tensors, %s of tensor data%s, %lld parameters, %.1f s\n",
              path.c_str(), o.shape.name.c_str(), model::file_type_name(o.type),
              model::arch_name(o.shape.arch), st.n_tensors, human_bytes(st.tensor_bytes).c_str(),
              o.no_data ? " (sparse: not written)" : "", static_cast<long long>(o.shape.n_params()),
              s);
  return 0;
}

}  // namespace

const Command kSynth = {
    "synth", "write a GGUF model of a real (or any) shape with random weights, for benchmarks",
    "synth (--preset NAME [--layers N] | --arch A --layers N --embd E --ff F --heads H "
    "--kv-heads K [--head-dim D] [--vocab V] [--tied] [--experts N [--experts-used K] [--ff-exp F] "
    "[--ff-shexp F]]) [--mtp N] --type FTYPE -o FILE [--seed S] "
    "[--no-data]",
    synth_options, run_synth};

}  // namespace straw::cli
