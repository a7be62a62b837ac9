// straw bench's measurements: llama-bench's pp and tg tests on straw's public API, and what a
// model reads per generated token (for the roofline).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "straw/straw.h"

namespace straw::cli::bench {

// What the report says about a loaded model.
struct ModelFacts {
  std::string filename;  // the file's name, without folders
  std::string label;     // "qwen2 0.5B Q4_K - Medium", as llama-bench's model column
  uint64_t bytes = 0;    // tensor data
  int64_t n_params = 0;  // tensor elements
  // Bytes one decode step reads besides the KV cache: every block tensor, the output norm and LM
  // head (token_embd when tied), rope factors, and one row of the embedding table; of an MoE
  // layer's experts (ffn_*_exps) only the active share, n_expert_used / n_expert.
  uint64_t weight_bytes_per_token = 0;
  uint64_t kv_bytes_per_position = 0;  // K and V of every attention layer for one position
  // Linear-attention layers: their recurrent state, read and written once per token.
  uint64_t state_bytes_per_token = 0;
};

ModelFacts model_facts(const Model& m);

// llama.cpp's name of a general.file_type id: "Q4_K - Medium", "IQ4_XS - 4.25 bpw".
std::string file_type_description(uint32_t id);

// Weights, KV and recurrent state read (and the state written) by a tg test of n tokens after
// `depth` cached tokens, per token on average: token i attends to depth+i+1 positions,
// depth+(n+1)/2 on average.
double tg_bytes_per_token(const ModelFacts& f, int n_gen, int depth = 0);

struct TestSpec {
  int threads = 0;
  int ubatch = 512;
  int n_prompt = 0;  // pp test when > 0
  int n_gen = 0;     // tg test when > 0 (exactly one of the two is set)
  int n_depth = 0;   // tokens already in the KV cache when the test starts (llama-bench's -d)

  std::string name() const;  // "pp512", "tg128", "tg128 @ d4096"
};

struct TestResult {
  TestSpec spec;
  std::vector<double> samples_ns;
  std::vector<double> samples_ts;  // tokens/s of each repetition
  double avg_ns = 0, stddev_ns = 0;
  double avg_ts = 0, stddev_ts = 0;
  // --profile (a model loaded with ModelOptions::profile_ops): the CPU ops of the timed
  // repetitions, summed over all of them (divide by reps * tokens for one token).
  std::vector<OpProfile> profile;
};

// Runs one test: n_depth random tokens evaluated once (not timed), a warm-up (pp: the whole prompt;
// tg: one token), then `reps` timed repetitions, each from the cache cut back to n_depth tokens.
// Prompt tokens are random ids from a fixed seed; tg feeds random ids too (no sampling).
// `session` must hold n_depth + max(n_prompt, n_gen) tokens.
TestResult run_test(Session& session, const TestSpec& spec, int reps,
                    const std::function<void(int rep)>& on_rep = {});

// Mean and sample standard deviation (0 for fewer than two samples).
double mean(const std::vector<double>& v);
double stddev(const std::vector<double>& v);

}  // namespace straw::cli::bench
