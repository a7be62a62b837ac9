#include "bench_spec.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "bench_run.h"
#include "util/json.h"

namespace straw::cli::bench {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

SpeculationStats plus(SpeculationStats a, const SpeculationStats& b) {
  a.steps += b.steps;
  a.proposed += b.proposed;
  a.checked += b.checked;
  a.accepted += b.accepted;
  a.step_tokens += b.step_tokens;
  a.propose_seconds += b.propose_seconds;
  return a;
}

}  // namespace

SpecTestResult run_spec_test(Model& target, const SpeculativeOptions& options,
                             const std::string& method, std::span<const int32_t> prompt, int n_gen,
                             int reps) {
  SpecTestResult r;
  r.method = method;
  r.n_prompt = int(prompt.size());
  r.n_gen = n_gen;
  r.reps = reps;
  GenerateOptions gen;
  gen.n_predict = n_gen;
  gen.sampling.temperature = 0.0f;
  gen.stop_at_eog = false;
  Session session(target);
  std::vector<int32_t> plain_tokens;
  auto plain = [&] {
    session.reset();
    GenerateOptions g = gen;
    const GenerateResult res = generate(session, prompt, g, {});
    plain_tokens = res.tokens;
    r.plain_steps = res.decode_steps;
    return double(res.tokens.size()) / res.generate_seconds;
  };
  auto speculative = [&](bool timed) {
    session.reset();
    Speculator spec(target, options);
    GenerateOptions g = gen;
    g.speculator = &spec;
    const GenerateResult res = generate(session, prompt, g, {});
    if (res.tokens != plain_tokens) r.same_tokens = false;
    if (timed) {
      r.stats = plus(r.stats, res.speculation);
      r.spec_steps = res.decode_steps;
    }
    return double(res.tokens.size()) / res.generate_seconds;
  };
  plain();
  speculative(false);
  for (int i = 0; i < reps; ++i) {
    r.plain_ts.push_back(plain());
    r.spec_ts.push_back(speculative(true));
  }
  r.plain_avg_ts = mean(r.plain_ts);
  r.spec_avg_ts = mean(r.spec_ts);
  r.speedup = r.plain_avg_ts > 0 ? r.spec_avg_ts / r.plain_avg_ts : 0;
  return r;
}

std::vector<VerifyResult> run_verify_test(Session& session, const std::vector<int>& ks, int depth,
                                          int reps) {
  const int64_t n_vocab = session.model().n_vocab();
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> pick(0, int32_t(n_vocab - 1));
  auto random_tokens = [&](int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int32_t& v : t) v = pick(rng);
    return t;
  };
  session.reset();
  if (depth > 0) session.eval(random_tokens(depth));
  std::vector<int> all = {0};
  for (int k : ks)
    if (k > 0 && std::find(all.begin(), all.end(), k) == all.end()) all.push_back(k);
  // Each repetition steps through every k in turn (interleaved: a neighbour's burst of load
  // slows all of them alike), after one warm-up of each; every row's logits are kept, as a
  // verification needs.
  std::vector<std::vector<int32_t>> batches;
  for (int k : all) batches.push_back(random_tokens(1 + k));
  std::vector<std::vector<double>> ms(all.size());
  for (int i = -1; i < reps; ++i)
    for (size_t j = 0; j < all.size(); ++j) {
      const auto t0 = std::chrono::steady_clock::now();
      session.eval(batches[j], all[j] > 0);
      const double t = 1e3 * seconds_since(t0);
      session.truncate(depth);
      if (i >= 0) ms[j].push_back(t);
    }
  std::vector<VerifyResult> out;
  for (size_t j = 0; j < all.size(); ++j) {
    VerifyResult v;
    v.k = all[j];
    v.depth = depth;
    v.avg_ms = mean(ms[j]);
    v.min_ms = *std::min_element(ms[j].begin(), ms[j].end());
    v.ratio = out.empty() || out[0].avg_ms <= 0 ? 1.0 : v.avg_ms / out[0].avg_ms;
    v.min_ratio = out.empty() || out[0].min_ms <= 0 ? 1.0 : v.min_ms / out[0].min_ms;
    out.push_back(v);
  }
  return out;
}

void print_spec_md(const std::vector<SpecTestResult>& spec, const std::vector<VerifyResult>& verify,
                   const std::string& model, int threads) {
  if (!spec.empty()) {
    std::printf(
        "| model | threads | method | prompt | n | plain t/s | spec t/s | speed-up | acceptance "
        "| tokens/step | proposed | steps plain/spec | same output |\n");
    std::printf(
        "| ----- | ------: | ------ | -----: | -: | --------: | -------: | -------: | ---------: "
        "| ----------: | -------: | ---------------: | ----------- |\n");
    for (const SpecTestResult& r : spec)
      std::printf(
          "| %s | %d | %s | %d | %d | %.2f ± %.2f | %.2f ± %.2f | %.2fx | %.1f%% | %.2f | %lld | "
          "%lld/%lld | %s |\n",
          model.c_str(), threads, r.method.c_str(), r.n_prompt, r.n_gen, r.plain_avg_ts,
          stddev(r.plain_ts), r.spec_avg_ts, stddev(r.spec_ts), r.speedup,
          100.0 * r.stats.acceptance_rate(), r.stats.tokens_per_step(),
          static_cast<long long>(r.stats.proposed), static_cast<long long>(r.plain_steps),
          static_cast<long long>(r.spec_steps), r.same_tokens ? "yes" : "NO");
  }
  if (!verify.empty()) {
    if (!spec.empty()) std::printf("\n");
    std::printf(
        "| model | threads | depth | tokens in the step | mean ms | cost vs 1 token | min ms | "
        "min vs 1 token |\n");
    std::printf(
        "| ----- | ------: | ----: | -----------------: | ------: | --------------: | -----: | "
        "-------------: |\n");
    for (const VerifyResult& v : verify)
      std::printf("| %s | %d | %d | 1+%d | %.2f | %.2fx | %.2f | %.2fx |\n", model.c_str(), threads,
                  v.depth, v.k, v.avg_ms, v.ratio, v.min_ms, v.min_ratio);
  }
}

void print_spec_json(const std::vector<SpecTestResult>& spec,
                     const std::vector<VerifyResult>& verify, const std::string& model,
                     int threads) {
  std::string s = "{\"model\": " + json_string(model) +
                  ", \"threads\": " + std::to_string(threads) + ", \"speculative\": [";
  for (size_t i = 0; i < spec.size(); ++i) {
    const SpecTestResult& r = spec[i];
    s += (i ? ", " : "") + std::string("{\"method\": ") + json_string(r.method) +
         ", \"n_prompt\": " + std::to_string(r.n_prompt) +
         ", \"n_gen\": " + std::to_string(r.n_gen) + ", \"reps\": " + std::to_string(r.reps) +
         ", \"plain_ts\": " + json_number(r.plain_avg_ts) +
         ", \"spec_ts\": " + json_number(r.spec_avg_ts) +
         ", \"speedup\": " + json_number(r.speedup) +
         ", \"acceptance_rate\": " + json_number(r.stats.acceptance_rate()) +
         ", \"tokens_per_step\": " + json_number(r.stats.tokens_per_step()) +
         ", \"proposed\": " + std::to_string(r.stats.proposed) +
         ", \"accepted\": " + std::to_string(r.stats.accepted) +
         ", \"verification_steps\": " + std::to_string(r.stats.steps) +
         ", \"plain_steps\": " + std::to_string(r.plain_steps) +
         ", \"spec_steps\": " + std::to_string(r.spec_steps) +
         ", \"same_tokens\": " + (r.same_tokens ? "true" : "false") + "}";
  }
  s += "], \"verify\": [";
  for (size_t i = 0; i < verify.size(); ++i) {
    const VerifyResult& v = verify[i];
    s += (i ? ", " : "") + std::string("{\"k\": ") + std::to_string(v.k) +
         ", \"depth\": " + std::to_string(v.depth) + ", \"ms\": " + json_number(v.avg_ms) +
         ", \"ratio\": " + json_number(v.ratio) + ", \"min_ms\": " + json_number(v.min_ms) +
         ", \"min_ratio\": " + json_number(v.min_ratio) + "}";
  }
  s += "]}\n";
  std::fwrite(s.data(), 1, s.size(), stdout);
}

}  // namespace straw::cli::bench
