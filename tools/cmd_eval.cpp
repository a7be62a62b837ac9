// straw eval: evaluate a token list as one prompt and write every position's logits.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>

#include "cli.h"
#include "model_flags.h"
#include "util/str.h"

namespace straw::cli {
namespace {

std::vector<Option> eval_options() {
  std::vector<Option> o = model_options();
  o.push_back(
      {"tokens", 0, true, "\"ID ID ...\"  token ids, space-separated, evaluated from position 0"});
  o.push_back(
      {"logits-out", 0, true, "FILE  logits of every position: float32 LE [n_tokens][n_vocab]"});
  return o;
}

std::vector<int32_t> parse_tokens(const std::string& s) {
  std::vector<int32_t> ids;
  std::istringstream in(s);
  std::string word;
  while (in >> word) {
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(word.c_str(), &end, 10);
    if (*end != '\0' || errno != 0 || v < INT32_MIN || v > INT32_MAX)
      throw UsageError("--tokens: '" + word + "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) throw UsageError("--tokens needs at least one token id");
  return ids;
}

int run_eval(const Args& a) {
  ModelOptions mo = model_options_from(a);
  std::vector<int32_t> tokens = parse_tokens(a.require("tokens"));
  std::string out_path = a.require("logits-out");
  auto model = load_model_verbose(mo, a.has("quiet"));
  // Without --ctx the session is sized for the prompt when it is longer than the default.
  const int64_t ctx = mo.ctx > 0 ? mo.ctx : std::max<int64_t>(model->options().ctx, tokens.size());
  Session session(*model, ctx);
  session.eval(tokens, /*all_logits=*/true);

  std::unique_ptr<FILE, int (*)(FILE*)> out(std::fopen(out_path.c_str(), "wb"), std::fclose);
  if (!out) fail(out_path, ": cannot create the output file: ", std::strerror(errno));
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::span<const float> l = session.logits(static_cast<int>(i));
    if (std::fwrite(l.data(), sizeof(float), l.size(), out.get()) != l.size())
      fail(out_path, ": write failed: ", std::strerror(errno));
  }
  if (std::fflush(out.get()) != 0) fail(out_path, ": write failed: ", std::strerror(errno));
  std::fprintf(stderr, "straw: %zu positions x %lld logits -> %s\n", tokens.size(),
               static_cast<long long>(model->n_vocab()), out_path.c_str());
  return 0;
}

}  // namespace

const Command kEval = {"eval", "evaluate token ids as one prompt and write all logits",
                       "eval -m MODEL --tokens \"ID ID ...\" --logits-out FILE [--threads N]",
                       eval_options, run_eval};

}  // namespace straw::cli
