#include "spec_flags.h"

#include <cstdio>

#include "model_flags.h"
#include "util/str.h"

namespace straw::cli {

std::vector<Option> spec_options() {
  return {
      {"spec", 0, true,
       "METHOD  speculative decoding: draft (a small model proposes, --model-draft), ngram "
       "(prompt lookup), mtp (Qwen3.5's own MTP / NextN layer) or none (default)"},
      {"model-draft", 0, true, "FILE  draft model with the same vocabulary (implies --spec draft)"},
      {"draft-max", 0, true, "N  most tokens proposed per step (default 16)"},
      {"draft-min", 0, true, "N  fewer proposed tokens than this are not verified (default 0)"},
      {"draft-p-min", 0, true,
       "P  stop proposing at a draft token of lower probability (default 0.8)"},
      {"spec-ngram-size", 0, true, "N  ngram: longest suffix looked up, in tokens (default 3)"},
      {"draft-fixed", 0, false,
       "always propose up to --draft-max tokens (no adaptive length, no cost check)"},
  };
}

std::string SpecChoice::method_name() const {
  switch (options.method) {
    case SpecMethod::Draft:
      return "draft";
    case SpecMethod::Ngram:
      return "ngram";
    case SpecMethod::Mtp:
      return "mtp";
    case SpecMethod::None:
      break;
  }
  return "none";
}

SpecChoice spec_from(const Args& a) {
  SpecChoice c;
  SpeculativeOptions& o = c.options;
  std::string method = a.get_or("spec", a.has("model-draft") ? "draft" : "none");
  if (method == "draft")
    o.method = SpecMethod::Draft;
  else if (method == "ngram")
    o.method = SpecMethod::Ngram;
  else if (method == "mtp")
    o.method = SpecMethod::Mtp;
  else if (method != "none")
    throw UsageError("--spec must be draft, ngram, mtp or none, got '" + method + "'");
  c.draft_path = a.get_or("model-draft", "");
  if (o.method == SpecMethod::Draft && c.draft_path.empty())
    throw UsageError("--spec draft needs the draft model: --model-draft FILE");
  if (o.method != SpecMethod::Draft && !c.draft_path.empty())
    throw UsageError("--model-draft is for --spec draft, not --spec " + method);
  o.draft_max = int(a.get_int("draft-max", 16));
  o.draft_min = int(a.get_int("draft-min", 0));
  o.draft_p_min = float(a.get_float("draft-p-min", 0.8));
  o.ngram_size = int(a.get_int("spec-ngram-size", 3));
  o.adaptive = !a.has("draft-fixed");
  if (o.draft_max < 1 || o.draft_max > 256) throw UsageError("--draft-max must be 1..256");
  if (o.draft_min < 0 || o.draft_min > o.draft_max)
    throw UsageError("--draft-min must be 0..--draft-max");
  if (!(o.draft_p_min >= 0 && o.draft_p_min <= 1)) throw UsageError("--draft-p-min must be 0..1");
  if (o.ngram_size < 1 || o.ngram_size > 64) throw UsageError("--spec-ngram-size must be 1..64");
  return c;
}

std::unique_ptr<Model> load_draft_model(const ModelOptions& target, const SpecChoice& spec,
                                        bool quiet) {
  ModelOptions d;
  d.path = spec.draft_path;
  d.threads = target.threads;
  d.ctx = target.ctx;
  d.ubatch = target.ubatch;
  d.kv_type_k = target.kv_type_k;
  d.kv_type_v = target.kv_type_v;
  d.cpu_kernels = target.cpu_kernels;
  d.device = target.device;
  d.vram_budget = target.vram_budget;
  d.cuda_graphs = target.cuda_graphs;
  d.repack_weights = target.repack_weights;
  d.sessions = target.sessions;
  if (!quiet) std::fprintf(stderr, "straw: draft model %s\n", d.path.c_str());
  return load_model_verbose(d, quiet);
}

ModelOptions after_draft(ModelOptions target, const Model* draft) {
  // An explicit budget is shared: the target gets what the draft left. An automatic one is the
  // GPU's free memory when the target loads, which the draft's allocations already reduced.
  if (draft && target.vram_budget) {
    // The CUDA context is the process's, counted in both plans: the draft's share leaves it out.
    const uint64_t used = draft->info().vram_bytes - draft->info().vram_shared_bytes;
    target.vram_budget = *target.vram_budget > used ? *target.vram_budget - used : 0;
  }
  return target;
}

Models load_models(ModelOptions target, SpecChoice& spec, bool quiet) {
  Models m;
  if (spec.options.method == SpecMethod::Draft) {
    m.draft = load_draft_model(target, spec, quiet);
    spec.options.draft_model = m.draft.get();
  }
  m.target = load_model_verbose(after_draft(target, m.draft.get()), quiet);
  return m;
}

void print_spec_stats(const std::string& method, const SpeculationStats& s) {
  std::fprintf(stderr,
               "straw: speculation (%s): %lld verification steps, %lld tokens proposed, %lld of "
               "%lld checked accepted (%.1f%%), %.2f tokens per step, proposing took %.2f s\n",
               method.c_str(), static_cast<long long>(s.steps), static_cast<long long>(s.proposed),
               static_cast<long long>(s.accepted), static_cast<long long>(s.checked),
               100.0 * s.acceptance_rate(), s.tokens_per_step(), s.propose_seconds);
}

}  // namespace straw::cli
