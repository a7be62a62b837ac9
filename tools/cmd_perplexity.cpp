// straw perplexity: perplexity of a text file, computed as llama.cpp's llama-perplexity does:
// the tokens are cut into chunks of ctx tokens (the first token of each chunk replaced by BOS when
// the model adds one), and the second half of each chunk is scored.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "api/model_impl.h"
#include "cli.h"
#include "model_flags.h"
#include "util/str.h"

namespace straw::cli {
namespace {

std::vector<Option> perplexity_options() {
  std::vector<Option> o = model_options();
  o.push_back({"file", 'f', true, "FILE  text to score"});
  o.push_back({"chunks", 0, true, "N  score at most N chunks (default: all)"});
  return o;
}

// -log softmax(logits)[target], in double.
double neg_log_prob(std::span<const float> logits, int32_t target) {
  double max = logits[0];
  for (float l : logits) max = std::max(max, double(l));
  double sum = 0;
  for (float l : logits) sum += std::exp(double(l) - max);
  return -(double(logits[target]) - max - std::log(sum));
}

int run_perplexity(const Args& a) {
  ModelOptions mo = model_options_from(a);
  if (mo.ctx == 0) mo.ctx = 512;  // llama-perplexity's default chunk size
  std::ifstream in(a.require("file"), std::ios::binary);
  if (!in) fail(a.require("file"), ": cannot open the text file");
  std::ostringstream ss;
  ss << in.rdbuf();
  auto model = load_model_verbose(mo, a.has("quiet"));
  std::vector<int32_t> tokens = model->tokenize(ss.str(), true, false);
  const int64_t n_ctx = mo.ctx;
  const model::Tokenizer& tok = *model->impl().tokenizer;
  const bool add_bos = tok.add_bos();
  const int32_t bos = tok.bos();
  int64_t n_chunks = int64_t(tokens.size()) / n_ctx;
  if (a.has("chunks")) n_chunks = std::min<int64_t>(n_chunks, a.get_int("chunks", n_chunks));
  if (n_chunks < 1)
    fail("the text has ", tokens.size(), " tokens; perplexity with --ctx ", n_ctx,
         " needs at least ", n_ctx, " (use a longer text or a smaller --ctx)");
  std::fprintf(stderr, "straw: %zu tokens, %lld chunks of %lld\n", tokens.size(),
               static_cast<long long>(n_chunks), static_cast<long long>(n_ctx));

  Session session(*model, n_ctx);
  const int64_t first = n_ctx / 2;
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  for (int64_t c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    if (add_bos) chunk[0] = bos;
    session.reset();
    session.eval(chunk, /*all_logits=*/true);
    // Position j predicts token j+1; positions first .. n_ctx-2 are scored.
    for (int64_t j = first; j < n_ctx - 1; ++j) {
      const double v = neg_log_prob(session.logits(int(j)), tokens[c * n_ctx + j + 1]);
      nll += v;
      nll2 += v * v;
      ++count;
    }
    std::printf("[%lld]%.4f,", static_cast<long long>(c + 1), std::exp(nll / double(count)));
    std::fflush(stdout);
  }
  const double mean = nll / double(count);
  const double var = nll2 / double(count) - mean * mean;
  const double ppl = std::exp(mean);
  const double err = var > 0 && count > 1 ? ppl * std::sqrt(var / double(count - 1)) : 0.0;
  std::printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", ppl, err);
  return 0;
}

}  // namespace

const Command kPerplexity = {
    "perplexity", "perplexity of a text file (as llama-perplexity computes it)",
    "perplexity -m MODEL -f TEXT [--ctx N]", perplexity_options, run_perplexity};

}  // namespace straw::cli
