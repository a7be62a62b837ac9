// Speculative decoding options shared by run, bench and serve: --spec, --model-draft, --draft-max,
// --draft-min, --draft-p-min, --spec-ngram-size (llama.cpp's names and meanings), --draft-fixed.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli.h"
#include "straw/straw.h"

namespace straw::cli {

std::vector<Option> spec_options();

struct SpecChoice {
  SpeculativeOptions options;  // draft_model is set by load_models()
  std::string draft_path;      // --model-draft
  bool on() const { return options.method != SpecMethod::None; }
  std::string method_name() const;  // "draft", "ngram", "mtp", "none"
};

// --model-draft alone means --spec draft. UsageError for a bad value or a missing draft model
// (a file without an MTP layer is refused when the Speculator is made).
SpecChoice spec_from(const Args& args);

// The models of a run: the draft model (when speculation uses one) is loaded first, with the
// target's threads, context, KV type, kernels, device and VRAM budget, so that the planner places
// it on the GPU first; the target then plans with the budget the draft left (an explicit
// --vram-budget is shared, an automatic one sees the draft's allocations).
struct Models {
  std::unique_ptr<Model> draft;
  std::unique_ptr<Model> target;
};
Models load_models(ModelOptions target, SpecChoice& spec, bool quiet);
// The two halves of load_models (straw serve loads on its own thread): the draft model with the
// target's settings, and the target's options once the draft is placed (null: no draft).
std::unique_ptr<Model> load_draft_model(const ModelOptions& target, const SpecChoice& spec,
                                        bool quiet);
ModelOptions after_draft(ModelOptions target, const Model* draft);

// One line on stderr: "straw: speculation (ngram): 20 steps, 60 proposed, 45 accepted (75.0%),
// 3.25 tokens per step, proposing 0.01 s".
void print_spec_stats(const std::string& method, const SpeculationStats& s);

}  // namespace straw::cli
