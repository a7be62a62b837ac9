// straw plan: where each tensor of a model would live under a VRAM budget, and the predicted speed.
// Works without a GPU (for a hypothetical budget) and on header-only (--no-data) files.
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "api/memory.h"
#include "api/model_impl.h"
#include "cli.h"
#include "cpu/cpu_features.h"
#include "gguf/gguf.h"
#include "model/hparams.h"
#include "model_flags.h"
#include "placement_flags.h"
#include "sched/calibration.h"
#include "sched/plan.h"
#include "sched/speculation.h"
#include "util/json.h"
#include "util/str.h"

namespace straw::cli {
namespace {

std::vector<Option> plan_options() {
  std::vector<Option> o = {
      {"model", 'm', true, "FILE  GGUF model"},
      {"ctx", 'c', true, "N  context length (default: min(model context, 4096))"},
      {"ubatch", 0, true, "N  micro-batch for prompt processing (default 512)"},
      {"output", 'o', true, "FORMAT  table (default) or json"},
      {"model-draft", 0, true,
       "FILE  speculative decoding's draft model: planned first on the GPU, the target gets the "
       "rest; prints the predicted speed-up at acceptance rates 0.5 / 0.7 / 0.9"},
      {"draft-max", 0, true, "N  with --model-draft: most tokens proposed per step (default 16)"},
      no_repack_option(),
  };
  std::vector<Option> p = placement_options();
  o.insert(o.end(), p.begin(), p.end());
  std::vector<Option> kv = kv_type_options();
  o.insert(o.end(), kv.begin(), kv.end());
  return o;
}

void print_json(const sched::Plan& p, const RamCheck& c, const std::string& extra) {
  std::string s = "{";
  auto num = [&](const char* k, uint64_t v, bool comma = true) {
    s += json_string(k) + ": " + std::to_string(v) + (comma ? ", " : "");
  };
  num("vram_budget", p.vram_budget);
  num("vram_bytes", p.vram_bytes);
  num("ram_bytes", p.ram_bytes);
  num("gpu_weight_bytes", p.gpu_weight_bytes);
  num("cpu_weight_bytes", p.cpu_weight_bytes);
  num("kv_gpu_bytes", p.kv_gpu_bytes);
  num("kv_cpu_bytes", p.kv_cpu_bytes);
  num("state_gpu_bytes", p.state_gpu_bytes);
  num("state_cpu_bytes", p.state_cpu_bytes);
  num("state_checkpoint_bytes", p.state_checkpoint_bytes);
  num("compute_gpu_bytes", p.compute_gpu_bytes);
  num("compute_cpu_bytes", p.compute_cpu_bytes);
  // Mixture of experts (zeros for a dense model): where the experts are, and what a decoded token
  // reads (the active experts' share of them), which predicted tg counts.
  int expert_gpu_layers = 0, expert_cpu_layers = 0;
  for (const auto& l : p.layers)
    if (l.expert_bytes > 0)
      ++(l.experts == sched::Device::Gpu ? expert_gpu_layers : expert_cpu_layers);
  s += "\"experts\": {";
  num("count", uint64_t(p.n_expert));
  num("used", uint64_t(p.n_expert_used));
  num("gpu_layers", uint64_t(expert_gpu_layers));
  num("cpu_layers", uint64_t(expert_cpu_layers), false);
  s += "}, ";
  num("expert_bytes", p.expert_gpu_bytes + p.expert_cpu_bytes);
  num("expert_gpu_bytes", p.expert_gpu_bytes);
  num("expert_cpu_bytes", p.expert_cpu_bytes);
  num("read_bytes_per_token", p.read_bytes_per_token);
  s += "\"notes\": [";
  for (size_t i = 0; i < p.notes.size(); ++i) s += (i ? ", " : "") + json_string(p.notes[i]);
  s += "], ";
  s += "\"output\": " + json_string(sched::device_name(p.output)) + ", ";
  num("transitions", uint64_t(p.transitions));
  s += "\"stream_prefill\": " + std::string(p.stream_prefill ? "true" : "false") + ", ";
  s += "\"calibrated\": " + std::string(p.speeds.calibrated ? "true" : "false") + ", ";
  // What loading would allocate (api/memory.h): the numbers Model::load's memory check compares.
  s += "\"ram\": {";
  num("need_bytes", c.need.total());
  num("weight_copy_bytes", c.need.weights);
  num("mapped_bytes", c.need.mapped);
  num("kv_bytes", c.need.kv);
  num("compute_bytes", c.need.compute);
  num("state_bytes", c.need.state);
  num("available_bytes", c.available);
  s += "\"available_source\": " + json_string(c.source) + ", ";
  s += "\"fits\": " + std::string(c.fits() ? "true" : "false") + "}, ";
  s += "\"tensors\": [";
  for (size_t i = 0; i < p.tensors.size(); ++i) {
    const auto& t = p.tensors[i];
    s += (i ? ", " : "") + std::string("{\"name\": ") + json_string(t.name) +
         ", \"device\": " + json_string(sched::device_name(t.device)) +
         ", \"bytes\": " + std::to_string(t.bytes) + "}";
  }
  s += "], \"layers\": [";
  for (size_t i = 0; i < p.layers.size(); ++i) {
    const auto& l = p.layers[i];
    s += (i ? ", " : "") + std::string("{\"index\": ") + std::to_string(l.index) +
         ", \"attn\": " + json_string(sched::device_name(l.attn)) +
         ", \"ffn\": " + json_string(sched::device_name(l.ffn)) +
         ", \"attn_bytes\": " + std::to_string(l.attn_bytes) +
         ", \"ffn_bytes\": " + std::to_string(l.ffn_bytes) +
         ", \"experts\": " + json_string(sched::device_name(l.experts)) +
         ", \"expert_bytes\": " + std::to_string(l.expert_bytes) +
         ", \"kv_bytes\": " + std::to_string(l.kv_bytes) +
         ", \"state_bytes\": " + std::to_string(l.state_bytes) + "}";
  }
  s += "], \"predicted\": {\"tg_tps\": " + json_number(p.predicted_tg_tps) +
       ", \"pp_tps\": " + json_number(p.predicted_pp_tps) + "}" + extra + "}\n";
  std::fwrite(s.data(), 1, s.size(), stdout);
}

void print_table(const sched::Plan& p, const RamCheck& c, const std::string& path,
                 const model::HParams& hp) {
  std::printf("plan for %s\n\n", path.c_str());
  // Linear-attention layers hold a recurrent state instead of a KV cache (same column).
  const bool linear = hp.has_recurrent();
  // MoE files get two more columns: the experts' device and size (the ffn column is the rest of
  // the FFN: norm, router, shared expert).
  const bool moe = p.n_expert > 0;
  std::printf("  layer  attn  ffn   %s attn weights    ffn weights  %s%s\n", moe ? "exps  " : "",
              moe ? "expert weights  " : "",
              linear ? "KV cache / recurrent state" : "     KV cache");
  for (const auto& l : p.layers) {
    const bool rec = hp.is_recurrent(l.index);
    std::printf("  %5d  %-4s  %-4s  ", l.index, sched::device_name(l.attn),
                sched::device_name(l.ffn));
    if (moe) std::printf("%-4s  ", sched::device_name(l.experts));
    std::printf("%13s  %13s  ", human_bytes(l.attn_bytes).c_str(),
                human_bytes(l.ffn_bytes).c_str());
    if (moe) std::printf("%14s  ", human_bytes(l.expert_bytes).c_str());
    std::printf("%13s%s\n", human_bytes(rec ? l.state_bytes : l.kv_bytes).c_str(),
                rec ? " state" : "");
  }
  std::printf("  output: %s\n\n", sched::device_name(p.output));
  if (moe) {
    int gpu_layers = 0, cpu_layers = 0;
    for (const auto& l : p.layers)
      if (l.expert_bytes > 0) ++(l.experts == sched::Device::Gpu ? gpu_layers : cpu_layers);
    std::printf(
        "experts (%d per layer, %d used per token): gpu %d layers (%s), cpu %d layers (%s); read "
        "per "
        "decoded token %s (experts at the active share)\n",
        p.n_expert, p.n_expert_used, gpu_layers, human_bytes(p.expert_gpu_bytes).c_str(),
        cpu_layers, human_bytes(p.expert_cpu_bytes).c_str(),
        human_bytes(p.read_bytes_per_token).c_str());
  }
  for (const std::string& n : p.notes) std::printf("note: %s\n", n.c_str());
  const double pct = p.vram_budget ? 100.0 * double(p.vram_bytes) / double(p.vram_budget) : 0.0;
  std::printf("VRAM: %s of a %s budget (%.1f%%): weights %s, KV %s%s, compute %s%s\n",
              human_bytes(p.vram_bytes).c_str(), human_bytes(p.vram_budget).c_str(), pct,
              human_bytes(p.gpu_weight_bytes).c_str(), human_bytes(p.kv_gpu_bytes).c_str(),
              linear ? (", state " + human_bytes(p.state_gpu_bytes)).c_str() : "",
              human_bytes(p.compute_gpu_bytes).c_str(),
              p.stream_prefill ? " (incl. the CUDA context and prefill streaming buffers)"
                               : " (incl. the CUDA context)");
  std::printf(
      "RAM:  %s (%s available, %s): weight copies %s, KV %s%s, compute %s; %s read from "
      "the file mapping\n",
      human_bytes(c.need.total()).c_str(),
      c.available ? human_bytes(c.available).c_str() : "unknown", c.source.c_str(),
      human_bytes(c.need.weights).c_str(), human_bytes(c.need.kv).c_str(),
      c.need.state ? (", recurrent state + checkpoints " + human_bytes(c.need.state)).c_str() : "",
      human_bytes(c.need.compute).c_str(), human_bytes(c.need.mapped).c_str());
  if (linear) {
    std::printf(
        "recurrent state (per sequence, fixed size: it does not grow with the context): %s on "
        "the GPU, %s on the CPU; %s of state checkpoints in RAM (for truncate)\n",
        human_bytes(p.state_gpu_bytes).c_str(), human_bytes(p.state_cpu_bytes).c_str(),
        human_bytes(p.state_checkpoint_bytes).c_str());
    if (!linear_attention_on_gpu())
      std::printf(
          "note: the GPU kernels of %s's linear-attention layers are not verified on a GPU yet: "
          "straw runs this model on the CPU unless STRAW_CUDA_LINEAR_ATTENTION=1\n",
          hp.arch_name.c_str());
  }
  std::printf("CPU<->GPU transitions per token: %d\n", p.transitions);
  std::printf("predicted: tg %.2f t/s, pp %.1f t/s%s\n", p.predicted_tg_tps, p.predicted_pp_tps,
              p.speeds.calibrated ? "" : "  (uncalibrated defaults: run `straw calibrate`)");
  // The refusal `straw run` would print (the same text).
  if (!c.fits()) std::printf("\n%s\n", ram_shortfall(c, p).c_str());
}

// A file's plan inputs (works on header-only files).
struct PlanInput {
  std::unique_ptr<gguf::Reader> reader;
  model::HParams hp;
  sched::ModelShape shape;
  std::vector<sched::TensorDesc> tensors;
  int64_t n_vocab = 0;
};

PlanInput read_plan_input(const std::string& path) {
  PlanInput in;
  in.reader = gguf::Reader::open(path);
  in.hp = model::read_hparams(*in.reader);
  in.n_vocab = in.reader->tensor("token_embd.weight").n_rows();
  in.shape = model::plan_shape(in.hp, in.n_vocab);
  for (const auto& t : in.reader->tensors())
    in.tensors.push_back({t.name, t.bytes, t.n_elements()});
  return in;
}

// The acceptance rates the speed-up is predicted at.
constexpr double kAcceptance[] = {0.5, 0.7, 0.9};

// Speculative decoding with a draft model, from the two plans' predicted step costs: for each
// acceptance rate the best draft length (1..draft_max) and its speed-up over plain decoding.
struct SpecPrediction {
  std::string draft_path;
  sched::Plan draft;
  uint64_t target_budget = 0;
  int draft_max = 16;
  std::vector<sched::DraftChoice> choices;  // one per kAcceptance
};

void print_spec_table(const SpecPrediction& s, const sched::Plan& target) {
  std::printf("\nspeculative decoding with the draft model %s\n", s.draft_path.c_str());
  std::printf("  draft:  VRAM %s (planned first: it runs every step), predicted tg %.2f t/s\n",
              human_bytes(s.draft.vram_bytes).c_str(), s.draft.predicted_tg_tps);
  std::printf("  target: VRAM budget left %s (the plan above), predicted tg %.2f t/s\n",
              human_bytes(s.target_budget).c_str(), target.predicted_tg_tps);
  const double t1 = sched::step_seconds(target, 1);
  std::printf("  one target step: 1 token %.1f ms", 1e3 * t1);
  for (int k : {4, 8})
    if (k <= s.draft_max)
      std::printf(", 1+%d tokens %.1f ms (%.2fx)", k, 1e3 * sched::step_seconds(target, 1 + k),
                  sched::step_seconds(target, 1 + k) / t1);
  std::printf("; draft token %.1f ms\n", 1e3 * sched::step_seconds(s.draft, 1));
  for (size_t i = 0; i < s.choices.size(); ++i) {
    const sched::DraftChoice& c = s.choices[i];
    if (c.k == 0)
      std::printf("  acceptance %.1f: speculation does not pay (plain decoding)\n", kAcceptance[i]);
    else
      std::printf(
          "  acceptance %.1f: %d proposals per step, %.2f tokens per step, predicted speed-up "
          "%.2fx (%.2f t/s)\n",
          kAcceptance[i], c.k, sched::expected_tokens(kAcceptance[i], c.k), c.speedup,
          c.speedup * target.predicted_tg_tps);
  }
}

std::string spec_json(const SpecPrediction& s) {
  std::string j = ", \"speculative\": {\"draft\": " + json_string(s.draft_path) +
                  ", \"draft_vram_bytes\": " + std::to_string(s.draft.vram_bytes) +
                  ", \"draft_tg_tps\": " + json_number(s.draft.predicted_tg_tps) +
                  ", \"target_vram_budget\": " + std::to_string(s.target_budget) +
                  ", \"predicted\": [";
  for (size_t i = 0; i < s.choices.size(); ++i)
    j += (i ? ", " : "") + std::string("{\"acceptance\": ") + json_number(kAcceptance[i]) +
         ", \"draft_length\": " + std::to_string(s.choices[i].k) +
         ", \"speedup\": " + json_number(s.choices[i].speedup) + "}";
  return j + "]}";
}

// One plan per KV cache type (--kv-type A,B,..), side by side.
void print_kv_list_table(const std::vector<std::pair<sched::KvType, sched::Plan>>& by_kv,
                         int64_t ctx) {
  std::printf(
      "\nKV cache types at ctx %lld (K and V of the type; quantized caches keep attention on the "
      "CPU, the GPU has none yet):\n",
      static_cast<long long>(ctx));
  std::printf("  %-5s  %11s  %11s  %14s  %11s  %10s  %10s\n", "type", "KV on GPU", "KV on CPU",
              "weights on GPU", "VRAM", "tg t/s", "pp t/s");
  for (const auto& [t, p] : by_kv)
    std::printf("  %-5s  %11s  %11s  %14s  %11s  %10.2f  %10.1f\n", sched::kv_type_name(t),
                human_bytes(p.kv_gpu_bytes).c_str(), human_bytes(p.kv_cpu_bytes).c_str(),
                human_bytes(p.gpu_weight_bytes).c_str(), human_bytes(p.vram_bytes).c_str(),
                p.predicted_tg_tps, p.predicted_pp_tps);
}

std::string kv_list_json(const std::vector<std::pair<sched::KvType, sched::Plan>>& by_kv) {
  if (by_kv.empty()) return "";
  std::string j = ", \"kv_types\": [";
  for (size_t i = 0; i < by_kv.size(); ++i) {
    const sched::Plan& p = by_kv[i].second;
    j += std::string(i ? ", " : "") + "{\"kv_type\": " + json_string(kv_type_name(by_kv[i].first)) +
         ", \"kv_gpu_bytes\": " + std::to_string(p.kv_gpu_bytes) +
         ", \"kv_cpu_bytes\": " + std::to_string(p.kv_cpu_bytes) +
         ", \"gpu_weight_bytes\": " + std::to_string(p.gpu_weight_bytes) +
         ", \"vram_bytes\": " + std::to_string(p.vram_bytes) +
         ", \"predicted_tg_tps\": " + json_number(p.predicted_tg_tps) +
         ", \"predicted_pp_tps\": " + json_number(p.predicted_pp_tps) + "}";
  }
  return j + "]";
}

int run_plan(const Args& a) {
  const std::string path = a.require("model");
  sched::PlanOptions po = plan_options_from(a);  // usage errors before the file is read
  const PlanInput in = read_plan_input(path);

  po.ctx = a.get_int("ctx", std::min<int64_t>(in.hp.n_ctx_train, 4096));
  po.ubatch = static_cast<int>(a.get_int("ubatch", 512));
  // As Model::load: MoE FFNs go to the GPU only when STRAW_CUDA_MOE=1 (not verified on a GPU yet).
  po.gpu_moe = moe_on_gpu();
  // --kv-type A,B,..: the first type's plan in full, then every type's side by side.
  const std::vector<sched::KvType> kv_list = plan_kv_type_list(a);
  if (kv_list.size() > 1) {
    if (a.has("cache-type-k") || a.has("cache-type-v") || a.has("model-draft"))
      throw UsageError("a list of --kv-type goes without -ctk/-ctv and --model-draft");
    po.kv_type_k = po.kv_type_v = kv_list[0];
  } else {
    set_plan_kv_types(a, po);
  }
  const sched::Speeds speeds = sched::load_speeds(sched::calibration_path());
  std::optional<SpecPrediction> spec;
  if (a.has("model-draft")) {
    // The draft model first, under the whole budget, with the target's context and KV type and
    // automatic placement; the target plans with what it leaves.
    spec.emplace();
    spec->draft_path = a.require("model-draft");
    spec->draft_max = static_cast<int>(a.get_int("draft-max", 16));
    if (spec->draft_max < 1 || spec->draft_max > 256)
      throw UsageError("--draft-max must be 1..256");
    const PlanInput d = read_plan_input(spec->draft_path);
    if (std::llabs(d.n_vocab - in.n_vocab) > 128)
      fail("the draft model's vocabulary has ", d.n_vocab, " tokens and the target's ", in.n_vocab,
           " (", spec->draft_path, ", ", path,
           "): a draft model must use the target's tokenizer, e.g. a smaller model of the same "
           "family");
    sched::PlanOptions dpo;
    dpo.vram_budget = po.vram_budget;
    dpo.ctx = std::min(po.ctx, d.hp.n_ctx_train);
    dpo.ubatch = po.ubatch;
    dpo.kv_type_k = po.kv_type_k;
    dpo.kv_type_v = po.kv_type_v;
    dpo.gpu_moe = po.gpu_moe;
    spec->draft = sched::make_plan(d.shape, d.tensors, dpo, speeds);
    spec->target_budget = sched::budget_after_draft(spec->draft, po.vram_budget);
    po.vram_budget = spec->target_budget;
  }
  // As Model::load: attention with a cache the GPU cannot hold (quantized, or K and V of different
  // types) stays on the CPU with its cache.
  const auto cpu_attention = [&](sched::PlanOptions o) {
    const bool gpu_kv_ok = o.kv_type_k == o.kv_type_v &&
                           (o.kv_type_k == sched::KvType::F16 || o.kv_type_k == sched::KvType::F32);
    o.cpu_attention = !gpu_kv_ok;
    return o;
  };
  const sched::Plan p = sched::make_plan(in.shape, in.tensors, cpu_attention(po), speeds);
  if (spec) {
    const sched::SpecCost cost = sched::predicted_cost(p, &spec->draft, spec->draft_max + 1);
    for (double acc : kAcceptance)
      spec->choices.push_back(sched::best_draft_length(cost, acc, 1, spec->draft_max));
  }
  const RamCheck c = check_ram(*in.reader, p, po.ctx, cpu::best_isa(), !a.has("no-repack"));
  std::vector<std::pair<sched::KvType, sched::Plan>> by_kv;
  if (kv_list.size() > 1)
    for (sched::KvType t : kv_list) {
      sched::PlanOptions o = po;
      o.kv_type_k = o.kv_type_v = t;
      by_kv.emplace_back(t, sched::make_plan(in.shape, in.tensors, cpu_attention(o), speeds));
    }
  const std::string fmt = a.get_or("output", "table");
  if (fmt == "json") {
    print_json(p, c, (spec ? spec_json(*spec) : "") + kv_list_json(by_kv));
  } else if (fmt == "table") {
    print_table(p, c, path, in.hp);
    if (spec) print_spec_table(*spec, p);
    if (!by_kv.empty()) print_kv_list_table(by_kv, po.ctx);
  } else {
    throw UsageError("-o must be table or json");
  }
  return 0;
}

}  // namespace

const Command kPlan = {
    "plan", "show where each tensor would live under a VRAM budget, and the predicted speed",
    "plan -m MODEL [--vram-budget SIZE] [--gpu-layers N] [--cpu-moe | --n-cpu-moe N] [--ctx N] "
    "[--kv-type f16|q8_0|q4_0[,..]] [-ctk TYPE] [-ctv TYPE] [--ubatch N] "
    "[--no-repack] [--model-draft FILE [--draft-max N]] [-o json]",
    plan_options, run_plan};

}  // namespace straw::cli
