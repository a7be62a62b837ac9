// straw bench's speculative-decoding tests:
//  - spec: greedy generation of n tokens from a real prompt, plain and with a speculator,
//    repetitions interleaved (other processes on the machine slow both alike); reports the
//    acceptance rate, tokens per verification step and the speed-up over plain decoding, and
//    checks that both produced the same tokens (greedy speculation must not change the output).
//  - verify: the cost of one target forward step over 1 + k tokens (a verification of k
//    proposals, every row's logits kept) against one token, at a given depth of the KV cache.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "straw/straw.h"

namespace straw::cli::bench {

struct SpecTestResult {
  std::string method;  // "ngram", "draft"
  int n_prompt = 0;
  int n_gen = 0;
  int reps = 0;
  std::vector<double> plain_ts, spec_ts;  // tokens/s of each timed repetition
  double plain_avg_ts = 0, spec_avg_ts = 0;
  double speedup = 0;       // spec_avg_ts / plain_avg_ts
  SpeculationStats stats;   // summed over the timed repetitions
  int64_t plain_steps = 0;  // target evaluations per repetition
  int64_t spec_steps = 0;   // (the last repetition's)
  bool same_tokens = true;  // every speculative repetition produced the plain run's tokens
};

// Greedy: temperature 0, no end-of-generation stop (exactly n_gen tokens). One untimed warm-up of
// each, then `reps` timed pairs. A fresh speculator per repetition (as a new request gets), so its
// draft model evaluates the prompt inside the timed generation: the honest cost of a request.
SpecTestResult run_spec_test(Model& target, const SpeculativeOptions& options,
                             const std::string& method, std::span<const int32_t> prompt, int n_gen,
                             int reps);

struct VerifyResult {
  int k = 0;             // proposals verified (the step evaluates 1 + k tokens)
  int depth = 0;         // tokens in the KV cache before the step
  double avg_ms = 0;     // mean time of the step
  double ratio = 0;      // avg_ms / the 1-token step's avg_ms at the same depth
  double min_ms = 0;     // fastest repetition (the least disturbed by other processes)
  double min_ratio = 0;  // min_ms / the 1-token step's min_ms
};

// For each k of `ks` (0 is always measured first: the plain decode step), `reps` timed steps of
// 1 + k random tokens after `depth` random tokens, each cut back afterwards (not timed), the ks
// interleaved within each repetition.
// `session` must have room for depth + 1 + max(ks) tokens.
std::vector<VerifyResult> run_verify_test(Session& session, const std::vector<int>& ks, int depth,
                                          int reps);

void print_spec_md(const std::vector<SpecTestResult>& spec, const std::vector<VerifyResult>& verify,
                   const std::string& model, int threads);
void print_spec_json(const std::vector<SpecTestResult>& spec,
                     const std::vector<VerifyResult>& verify, const std::string& model,
                     int threads);

}  // namespace straw::cli::bench
