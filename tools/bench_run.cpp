#include "bench_run.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

#include "api/model_impl.h"
#include "quant/types.h"

namespace straw::cli::bench {

std::string file_type_description(uint32_t id) {
  switch (id) {
    case 0:
      return "all F32";
    case 1:
      return "F16";
    case 2:
      return "Q4_0";
    case 3:
      return "Q4_1";
    case 7:
      return "Q8_0";
    case 8:
      return "Q5_0";
    case 9:
      return "Q5_1";
    case 10:
      return "Q2_K - Medium";
    case 11:
      return "Q3_K - Small";
    case 12:
      return "Q3_K - Medium";
    case 13:
      return "Q3_K - Large";
    case 14:
      return "Q4_K - Small";
    case 15:
      return "Q4_K - Medium";
    case 16:
      return "Q5_K - Small";
    case 17:
      return "Q5_K - Medium";
    case 18:
      return "Q6_K";
    case 21:
      return "Q2_K - Small";
    case 25:
      return "IQ4_NL - 4.5 bpw";
    case 30:
      return "IQ4_XS - 4.25 bpw";
    case 32:
      return "BF16";
    default:
      return "file type " + std::to_string(id);
  }
}

namespace {

// "0.5B" from general.size_label, else from the parameter count ("494.03M" style is llama-bench's
// params column, so the label keeps two significant digits).
std::string size_label(const gguf::Reader& r, int64_t n_params) {
  if (auto s = r.find_string("general.size_label")) return *s;
  char buf[32];
  const double p = static_cast<double>(n_params);
  if (p >= 1e9)
    std::snprintf(buf, sizeof buf, "%.1fB", p / 1e9);
  else
    std::snprintf(buf, sizeof buf, "%.0fM", p / 1e6);
  return buf;
}

}  // namespace

ModelFacts model_facts(const Model& m) {
  const Model::Impl& im = m.impl();
  const gguf::Reader& r = *im.reader;
  ModelFacts f;
  f.filename = std::filesystem::path(im.options.path).filename().string();
  const gguf::TensorInfo* embd = r.find_tensor("token_embd.weight");
  const bool tied = r.find_tensor("output.weight") == nullptr;
  const model::HParams& hp = im.hp;
  for (const gguf::TensorInfo& t : r.tensors()) {
    f.bytes += t.bytes;
    f.n_params += t.n_elements();
    // Blocks past n_layer (MTP / NextN) are not run. A token reads n_expert_used of the n_expert
    // experts of an MoE layer (on average: the router picks which).
    const sched::UnitOf u = sched::unit_of(t.name);
    if (&t == embd || u.layer >= hp.n_layer) continue;
    if (u.part == sched::Part::Experts && hp.n_expert > 0)
      f.weight_bytes_per_token += t.bytes * uint64_t(hp.n_expert_used) / uint64_t(hp.n_expert);
    else
      f.weight_bytes_per_token += t.bytes;
  }
  if (embd) {
    f.weight_bytes_per_token += quant::row_bytes(embd->type, embd->ne[0]);
    if (tied) f.weight_bytes_per_token += embd->bytes;
  }
  const ops::KvType kv_k = kv_type(im.options.kv_type_k), kv_v = kv_type(im.options.kv_type_v);
  int n_linear = 0;
  for (int il = 0; il < hp.n_layer; ++il) n_linear += hp.is_recurrent(il);
  f.kv_bytes_per_position = static_cast<uint64_t>(hp.n_layer - n_linear) *
                            (ops::kv_row_bytes(kv_k, int64_t(hp.n_head_kv) * hp.head_dim) +
                             ops::kv_row_bytes(kv_v, int64_t(hp.n_head_kv) * hp.head_dim_v));
  f.state_bytes_per_token = 2 * static_cast<uint64_t>(n_linear) * hp.recurrent_layer_bytes();
  std::string ftype = "unknown type";
  if (auto id = r.find_u32("general.file_type")) ftype = file_type_description(*id);
  f.label = hp.arch_name + " " + size_label(r, f.n_params) + " " + ftype;
  return f;
}

double tg_bytes_per_token(const ModelFacts& f, int n_gen, int depth) {
  return static_cast<double>(f.weight_bytes_per_token + f.state_bytes_per_token) +
         static_cast<double>(f.kv_bytes_per_position) * (depth + (n_gen + 1) / 2.0);
}

std::string TestSpec::name() const {
  std::string n = n_prompt > 0 ? "pp" + std::to_string(n_prompt) : "tg" + std::to_string(n_gen);
  return n_depth > 0 ? n + " @ d" + std::to_string(n_depth) : n;
}

double mean(const std::vector<double>& v) {
  if (v.empty()) return 0;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

TestResult run_test(Session& session, const TestSpec& spec, int reps,
                    const std::function<void(int)>& on_rep) {
  const int64_t n_vocab = session.model().n_vocab();
  std::mt19937_64 rng(0x5EED);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(n_vocab - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(spec.n_prompt));
  for (int32_t& t : prompt) t = token(rng);
  std::vector<int32_t> context(static_cast<size_t>(spec.n_depth));
  for (int32_t& t : context) t = token(rng);
  session.reset();
  if (!context.empty()) session.eval(context);

  auto pp = [&] {
    session.truncate(spec.n_depth);
    session.eval(prompt);
  };
  auto tg = [&](int n) {
    session.truncate(spec.n_depth);
    for (int i = 0; i < n; ++i) {
      const int32_t t = token(rng);
      session.eval(std::span<const int32_t>(&t, 1));
    }
  };

  if (spec.n_prompt > 0)
    pp();
  else
    tg(1);

  TestResult res;
  res.spec = spec;
  const int n_tokens = spec.n_prompt > 0 ? spec.n_prompt : spec.n_gen;
  Model& model = session.model();
  model.reset_op_profile();  // the timed repetitions only (not the depth or the warm-up)
  for (int rep = 0; rep < reps; ++rep) {
    if (on_rep) on_rep(rep);
    const auto t0 = std::chrono::steady_clock::now();
    if (spec.n_prompt > 0)
      pp();
    else
      tg(spec.n_gen);
    const double ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    res.samples_ns.push_back(ns);
    res.samples_ts.push_back(1e9 * n_tokens / ns);
  }
  res.profile = model.op_profile();
  session.reset();
  res.avg_ns = mean(res.samples_ns);
  res.stddev_ns = stddev(res.samples_ns);
  res.avg_ts = mean(res.samples_ts);
  res.stddev_ts = stddev(res.samples_ts);
  return res;
}

}  // namespace straw::cli::bench
