// straw bench: llama-bench's tests on straw (pp: one prompt from an empty cache; tg: single-token
// decodes), with the decode roofline: bytes read per token against the machine's read bandwidth
// measured in the same run. `straw bench --bandwidth` measures only the bandwidth.
//
// Comma lists sweep a parameter (-t 1,2 -p 128,512 --ubatch 64,512 --gpu-layers 0,20,40); the
// model is loaded once per (gpu-layers, ubatch, threads) combination and runs every pp test, then
// every tg test, as llama-bench orders them.
//
// Speculative decoding (bench_spec.h): --spec ngram|draft|mtp runs greedy generation from a real
// prompt (--prompt / --prompt-file) plain and speculative, and reports the acceptance rate, tokens
// per verification step and the speed-up; --verify K[,K..] measures a forward step over 1 + K
// tokens against one token. These replace the pp and tg tests.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "api/model_impl.h"
#include "bench_bandwidth.h"
#include "bench_profile.h"
#include "bench_report.h"
#include "bench_run.h"
#include "bench_spec.h"
#include "cli.h"
#include "cpu/cpu_features.h"
#include "cpu/thread_pool.h"
#include "load_progress.h"
#include "model_flags.h"
#include "placement_flags.h"
#include "spec_flags.h"
#include "util/str.h"

namespace straw::cli {
namespace {

using bench::Bandwidth;
using bench::ModelFacts;
using bench::Row;

std::vector<Option> bench_options() {
  std::vector<Option> o = {
      {"model", 'm', true, "FILE  GGUF model (first shard of a split model)"},
      {"n-prompt", 'p', true, "N[,N..]  prompt lengths of the pp tests (default 512; 0: none)"},
      {"n-gen", 'n', true, "N[,N..]  tokens of the tg tests (default 128; 0: none)"},
      {"n-depth", 'd', true, "N[,N..]  tokens in the KV cache before each test (default 0)"},
      {"repetitions", 'r', true, "N  timed repetitions of each test (default 5)"},
      {"threads", 't', true, "N[,N..]  worker threads (default: physical cores)"},
      {"ubatch", 0, true, "N[,N..]  prompt tokens per forward pass (default 512)"},
      {"ctx", 'c', true,
       "N  context the KV cache and the plan are sized for (default: the longest test)"},
      {"device", 0, true, "DEV  auto (default), cpu or gpu"},
      cpu_kernels_option(),
      {"gpu-layers", 0, true, "N[,N..]  llama.cpp's -ngl: the last N layers on the GPU, or 'all'"},
      {"vram-budget", 0, true, "SIZE  GPU memory straw may use (0: CPU only)"},
      moe_options()[0],
      moe_options()[1],
      {"no-cuda-graphs", 0, false, "launch the decode step's kernels one by one (for comparison)"},
      {"output", 'o', true, "FMT  md (default), json or csv"},
      {"bandwidth", 0, false, "only measure the machine's read bandwidth (no model)"},
      {"bandwidth-buffer", 0, true, "SIZE  buffer of the bandwidth test (default 4x LLC, 1-2 GiB)"},
      {"progress", 0, false, "print each test and repetition to stderr"},
      {"profile", 0, false,
       "time every CPU op and print, after the results, where one token's time goes (md: a table "
       "per test; json: a \"profile\" list per row)"},
      no_repack_option(),
      quiet_option(),
      {"prompt", 0, true, "TEXT  --spec: the prompt generation starts from"},
      {"prompt-file", 0, true, "FILE  --spec: read the prompt from a file"},
      {"verify", 0, true,
       "K[,K..]  measure a forward step over 1+K tokens (a verification of K proposals) against "
       "one token, at each -d depth"},
  };
  std::vector<Option> spec = spec_options();
  o.insert(o.end(), spec.begin(), spec.end());
  std::vector<Option> kv = kv_type_options();
  o.insert(o.end(), kv.begin(), kv.end());
  return o;
}

// "1,2,4" -> {1, 2, 4}; each value >= min. "all" (where allowed) stands for `all`.
std::vector<int> int_list(const std::string& name, const std::string& value, int min,
                          std::optional<int> all = std::nullopt) {
  std::vector<int> out;
  std::stringstream ss(value);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (all && item == "all") {
      out.push_back(*all);
      continue;
    }
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < min || v > 1000000)
      throw UsageError(str("--", name, ": '", item, "' is not an integer >= ", min));
    out.push_back(static_cast<int>(v));
  }
  if (out.empty()) throw UsageError(str("--", name, " needs at least one value"));
  return out;
}

std::vector<int> int_list(const Args& a, const std::string& name, const std::string& fallback,
                          int min) {
  return int_list(name, a.get_or(name, fallback), min);
}

// The options every load shares (model, KV type, device, VRAM budget).
ModelOptions base_options(const Args& a) {
  ModelOptions o;
  o.path = a.require("model");
  set_kv_types(a, o);
  o.cpu_kernels = cpu_kernels_from(a);
  const std::string dev = a.get_or("device", "auto");
  if (dev == "cpu")
    o.device = DeviceChoice::Cpu;
  else if (dev == "gpu")
    o.device = DeviceChoice::Gpu;
  else if (dev != "auto")
    throw UsageError("--device must be auto, cpu or gpu, got '" + dev + "'");
  if (a.has("vram-budget")) o.vram_budget = parse_size(a.require("vram-budget"));
  o.n_cpu_moe = n_cpu_moe_from(a);
  o.cuda_graphs = !a.has("no-cuda-graphs");
  o.repack_weights = !a.has("no-repack");
  o.profile_ops = a.has("profile");
  return o;
}

std::string read_file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open the prompt file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// --spec / --verify: one load (one value of -t and --ubatch), the speculative tests.
int run_spec_bench(const Args& a, ModelOptions mo, const std::vector<int>& threads, int reps,
                   const std::string& format) {
  if (threads.size() != 1 || a.get_or("ubatch", "512").find(',') != std::string::npos ||
      a.has("gpu-layers"))
    throw UsageError("--spec and --verify take one -t and one --ubatch value (no --gpu-layers)");
  if (format == "csv") throw UsageError("--spec and --verify print md or json");
  SpecChoice spec = spec_from(a);
  const std::vector<int> gens = int_list(a, "n-gen", "128", 1);
  const std::vector<int> depths = int_list(a, "n-depth", "0", 0);
  const std::vector<int> ks = a.has("verify") ? int_list(a, "verify", "", 1) : std::vector<int>{};
  std::string prompt;
  if (spec.options.method != SpecMethod::None) {
    prompt =
        a.has("prompt-file") ? read_file_text(a.require("prompt-file")) : a.get_or("prompt", "");
    if (prompt.empty())
      throw UsageError("--spec needs the text to start from: --prompt TEXT or --prompt-file FILE");
  }
  mo.threads = threads[0];
  mo.ubatch = int(a.get_int("ubatch", 512));
  const int max_k = ks.empty() ? 0 : *std::max_element(ks.begin(), ks.end());
  const int max_d = *std::max_element(depths.begin(), depths.end());
  const int max_n = *std::max_element(gens.begin(), gens.end());
  int64_t ctx = std::max<int64_t>(max_d + 1 + max_k, 0);
  std::vector<int32_t> tokens;
  Models m;
  // The prompt's length is known once the model (its tokenizer) is loaded: load with the
  // model's default context, then check.
  if (a.has("ctx")) mo.ctx = a.get_int("ctx", 0);
  m = load_models(mo, spec, a.has("quiet"));
  if (!prompt.empty()) tokens = m.target->tokenize(prompt);
  ctx = std::max<int64_t>(ctx, int64_t(tokens.size()) + max_n + 1);
  const Model::Impl& im = m.target->impl();
  if (ctx > im.n_ctx)
    throw UsageError(str("the tests need a context of ", ctx, " tokens; the model is loaded with ",
                         im.n_ctx, ": pass --ctx ", ctx));
  const std::string name = bench::model_facts(*m.target).filename;
  std::vector<bench::SpecTestResult> spec_rows;
  std::vector<bench::VerifyResult> verify_rows;
  if (spec.options.method != SpecMethod::None)
    for (int n : gens) {
      if (a.has("progress"))
        std::fprintf(stderr, "straw bench: speculative (%s), %d tokens\n",
                     spec.method_name().c_str(), n);
      spec_rows.push_back(
          bench::run_spec_test(*m.target, spec.options, spec.method_name(), tokens, n, reps));
    }
  if (!ks.empty()) {
    Session session(*m.target);
    for (int d : depths) {
      if (a.has("progress")) std::fprintf(stderr, "straw bench: verification cost, depth %d\n", d);
      const std::vector<bench::VerifyResult> v = bench::run_verify_test(session, ks, d, reps);
      verify_rows.insert(verify_rows.end(), v.begin(), v.end());
    }
  }
  if (format == "json")
    bench::print_spec_json(spec_rows, verify_rows, name, mo.threads);
  else
    bench::print_spec_md(spec_rows, verify_rows, name, mo.threads);
  return 0;
}

int run_bench(const Args& a) {
  if (!a.positional().empty()) throw UsageError("unexpected argument '" + a.positional()[0] + "'");
  const std::string format = a.get_or("output", "md");
  if (format != "md" && format != "json" && format != "csv")
    throw UsageError("--output must be md, json or csv, got '" + format + "'");
  if (format == "csv" && a.has("profile")) throw UsageError("--profile prints md or json");
  const std::vector<int> threads = int_list(a, "threads", std::to_string(cpu::physical_cores()), 1);
  const int64_t reps = a.get_int("repetitions", 5);
  if (reps < 1 || reps > 1000) throw UsageError("--repetitions must be 1..1000");
  const uint64_t buffer = a.has("bandwidth-buffer") ? parse_size(a.require("bandwidth-buffer"))
                                                    : bench::default_bandwidth_buffer();
  const bool progress = a.has("progress");
  bench::ReportOptions report;
  report.cpu_info = bench::cpu_info();
  report.cpu_kernels = cpu::isa_name(cpu_isa(cpu_kernels_from(a)).value_or(cpu::best_isa()));
  if (a.has("model")) {
    const ModelOptions kv = base_options(a);
    report.type_k = ops::kv_type_name(kv_type(kv.kv_type_k));
    report.type_v = ops::kv_type_name(kv_type(kv.kv_type_v));
  }

  // With a model loaded, its workers fall asleep after a few idle milliseconds (cpu/thread_pool.h),
  // long before the passes start (the buffer is filled first): they do not compete.
  auto measure = [&](int t) {
    if (progress) std::fprintf(stderr, "straw bench: measuring read bandwidth, %d threads\n", t);
    return bench::measure_read_bandwidth(t, 5, buffer);
  };
  if (a.has("bandwidth")) {
    if (a.has("model")) throw UsageError("--bandwidth measures the machine only: drop -m");
    std::vector<Bandwidth> bws;
    for (int t : threads) bws.push_back(measure(t));
    bench::print_bandwidth(bws, format, report.cpu_info);
    return 0;
  }

  const ModelOptions base = base_options(a);
  if (a.has("verify") || spec_from(a).options.method != SpecMethod::None)
    return run_spec_bench(a, base, threads, static_cast<int>(reps), format);
  const std::vector<int> prompts = int_list(a, "n-prompt", "512", 0);
  const std::vector<int> gens = int_list(a, "n-gen", "128", 0);
  const std::vector<int> depths = int_list(a, "n-depth", "0", 0);
  const std::vector<int> ubatches = int_list(a, "ubatch", "512", 1);
  // -1: automatic placement (no --gpu-layers); "all" is every layer plus the output.
  const std::vector<int> ngls = a.has("gpu-layers")
                                    ? int_list("gpu-layers", a.require("gpu-layers"), 0, 1 << 30)
                                    : std::vector<int>{-1};
  const int max_p = *std::max_element(prompts.begin(), prompts.end());
  const int max_n = *std::max_element(gens.begin(), gens.end());
  if (max_p == 0 && max_n == 0) throw UsageError("nothing to run: -p and -n are both 0");

  std::vector<ModelFacts> facts;  // one per load; rows point into it (reserved: no reallocation)
  facts.reserve(ngls.size() * ubatches.size() * threads.size());
  std::vector<Row> rows;
  for (int ngl : ngls) {
    for (int ub : ubatches) {
      for (int t : threads) {
        ModelOptions mo = base;
        mo.threads = t;
        mo.ubatch = ub;
        mo.ctx = std::max(max_p, max_n) + *std::max_element(depths.begin(), depths.end());
        // --ctx sizes the KV cache (and so the plan) as a real session would, e.g. 8192.
        if (a.has("ctx")) {
          const int64_t c = a.get_int("ctx", 0);
          if (c < mo.ctx)
            throw UsageError("--ctx must be at least the longest test (" + std::to_string(mo.ctx) +
                             ")");
          mo.ctx = static_cast<int>(c);
        }
        if (ngl >= 0) mo.gpu_layers = ngl;
        // Load progress on stderr (the results go to stdout); one summary line per load.
        LoadProgressPrinter printer(a.has("quiet"), stderr_is_terminal());
        mo.on_progress = printer.callback();
        std::unique_ptr<Model> model;
        try {
          model = Model::load(mo);
        } catch (...) {
          printer.abandon();
          throw;
        }
        printer.finish();
        facts.push_back(bench::model_facts(*model));
        const ModelFacts& f = facts.back();
        Session session(*model);
        std::vector<bench::TestSpec> specs;
        for (int d : depths) {
          for (int p : prompts)
            if (p > 0) specs.push_back({t, ub, p, 0, d});
          for (int n : gens)
            if (n > 0) specs.push_back({t, ub, 0, n, d});
        }
        for (const bench::TestSpec& spec : specs) {
          auto on_rep = [&](int rep) {
            if (progress)
              std::fprintf(stderr, "straw bench: %s, %d threads, ubatch %d: run %d/%lld\n",
                           spec.name().c_str(), t, ub, rep + 1, static_cast<long long>(reps));
          };
          Row row;
          row.model = &f;
          row.path = base.path;
          row.placement = model->info().placement;
          row.gpu_layers = ngl;
          // The machine's bandwidth can change from one minute to the next (other tenants), so
          // each tg test is bracketed by two measurements and the higher one is its roofline.
          const double bw_before = spec.n_gen > 0 ? measure(t).best : 0.0;
          row.r = bench::run_test(session, spec, static_cast<int>(reps), on_rep);
          if (spec.n_gen > 0) {
            row.bytes_per_token = bench::tg_bytes_per_token(f, spec.n_gen, spec.n_depth);
            row.achieved = row.bytes_per_token * row.r.avg_ts;
            row.bandwidth = std::max(bw_before, measure(t).best);
            row.roofline = row.bandwidth > 0 ? row.achieved / row.bandwidth : 0;
          }
          rows.push_back(std::move(row));
        }
      }
    }
  }

  report.show_ubatch = ubatches.size() > 1 || ubatches[0] != 512;
  report.show_ngl = a.has("gpu-layers");
  if (format == "json")
    bench::print_json(rows, report);
  else if (format == "csv")
    bench::print_csv(rows, report);
  else
    bench::print_md(rows, report);
  if (format == "md") bench::print_profile_md(rows);
  return 0;
}

}  // namespace

const Command kBench = {
    "bench",
    "measure prompt (pp) and generation (tg) speed as llama-bench does, with the decode roofline",
    "bench -m MODEL [-p 512] [-n 128] [-d 0] [-r 5] [-t THREADS] [--ubatch N] [--gpu-layers N] "
    "[--vram-budget SIZE] [--cpu-moe | --n-cpu-moe N] [--ctx N] "
    "[-o md|json|csv] | bench --bandwidth [-t THREADS] | bench -m MODEL --spec ngram|draft|mtp "
    "[--model-draft FILE] --prompt TEXT [-n 128] [--verify K[,K..] [-d N]]",
    bench_options, run_bench};

}  // namespace straw::cli
