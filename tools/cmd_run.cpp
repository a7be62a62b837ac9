// straw run: generate text from a prompt, or chat interactively (--chat).
// stdout carries only the generated text; load progress and speeds go to stderr.
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "api/model_impl.h"
#include "cli.h"
#include "model_flags.h"
#include "spec_flags.h"
#include "util/str.h"

namespace straw::cli {
namespace {

std::atomic<bool> g_interrupted{false};
std::atomic<bool> g_generating{false};

extern "C" void on_sigint(int) {
  g_interrupted.store(true);
  // A second Ctrl-C while idle at the prompt (or during the prompt's read) ends the program.
  if (!g_generating.load()) {
    std::signal(SIGINT, SIG_DFL);
  }
}

std::vector<Option> run_options() {
  std::vector<Option> o = model_options();
  std::vector<Option> more = {
      {"prompt", 'p', true, "TEXT  prompt (with --chat: the first user message)"},
      {"file", 'f', true, "FILE  read the prompt from a file"},
      {"n-predict", 'n', true, "N  tokens to generate (default 128; -1: until end of generation)"},
      {"temp", 0, true, "T  temperature (0: greedy; default: model's, else 0.8)"},
      {"top-k", 0, true, "K  top-k (default 40; 0: off)"},
      {"top-p", 0, true, "P  top-p (default 0.95; 1: off)"},
      {"min-p", 0, true, "P  min-p (default 0.05; 0: off)"},
      {"repeat-penalty", 0, true, "X  repetition penalty (default 1: off)"},
      {"repeat-last-n", 0, true, "N  penalty window (default 64; -1: whole history)"},
      {"frequency-penalty", 0, true, "X  frequency penalty (default 0)"},
      {"presence-penalty", 0, true, "X  presence penalty (default 0)"},
      {"seed", 's', true, "S  random seed (default: random)"},
      {"chat", 0, false, "interactive multi-turn chat with the model's template"},
      {"system", 0, true, "TEXT  system message for --chat"},
      {"no-special", 0, false, "do not parse special tokens written in the prompt"},
      {"context-shift", 0, false,
       "when the context fills, drop the oldest half of the tokens after --keep and go on "
       "(default: stop)"},
      {"keep", 0, true,
       "N  with --context-shift: prompt tokens a shift never drops (default 0; -1: the whole "
       "first prompt; the BOS token is kept besides)"},
  };
  o.insert(o.end(), more.begin(), more.end());
  std::vector<Option> spec = spec_options();
  o.insert(o.end(), spec.begin(), spec.end());
  return o;
}

SamplingOptions sampling_from(const Args& a) {
  SamplingOptions s;
  if (a.has("temp")) s.temperature = float(a.get_float("temp", 0));
  if (a.has("top-k")) s.top_k = int32_t(a.get_int("top-k", 0));
  if (a.has("top-p")) s.top_p = float(a.get_float("top-p", 0));
  if (a.has("min-p")) s.min_p = float(a.get_float("min-p", 0));
  if (a.has("repeat-penalty")) s.repeat_penalty = float(a.get_float("repeat-penalty", 1));
  if (a.has("repeat-last-n")) s.penalty_last_n = int32_t(a.get_int("repeat-last-n", 64));
  if (a.has("frequency-penalty")) s.frequency_penalty = float(a.get_float("frequency-penalty", 0));
  if (a.has("presence-penalty")) s.presence_penalty = float(a.get_float("presence-penalty", 0));
  if (a.has("seed")) s.seed = uint64_t(a.get_int("seed", 0));
  return s;
}

std::string read_prompt(const Args& a) {
  if (auto f = a.get("file")) {
    std::ifstream in(*f, std::ios::binary);
    if (!in) fail(*f, ": cannot open the prompt file");
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  return a.get_or("prompt", "");
}

void print_speeds(const GenerateResult& r) {
  const double pp = r.prompt_seconds > 0 ? double(r.prompt_tokens) / r.prompt_seconds : 0;
  const double tg = r.generate_seconds > 0 ? double(r.tokens.size()) / r.generate_seconds : 0;
  std::fprintf(stderr,
               "\nstraw: prompt %lld tokens in %.2f s (%.2f t/s); generated %zu tokens in %.2f s "
               "(%.2f t/s)\n",
               static_cast<long long>(r.prompt_tokens), r.prompt_seconds, pp, r.tokens.size(),
               r.generate_seconds, tg);
}

bool stream_text(std::string_view text, int32_t) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return !g_interrupted.load();
}

void print_speculation(const GenerateOptions& gen, const GenerateResult& r) {
  if (!gen.speculator) return;
  SpecChoice c;
  c.options = gen.speculator->options();
  print_spec_stats(c.method_name(), r.speculation);
}

// --context-shift and --keep (llama.cpp's: N prompt tokens besides the BOS; -1: the whole first
// prompt).
void set_keep(const Model& model, const Args& a, std::span<const int32_t> first_prompt,
              GenerateOptions& gen) {
  gen.context_shift = a.has("context-shift");
  const int64_t keep = a.get_int("keep", 0);
  if (keep < -1) throw UsageError("--keep must be -1 or more");
  if (!gen.context_shift) {
    if (a.has("keep")) throw UsageError("--keep goes with --context-shift");
    return;
  }
  const bool bos = !first_prompt.empty() && !model.tokenize("", true, false).empty() &&
                   first_prompt[0] == model.tokenize("", true, false)[0];
  gen.n_keep = keep < 0 ? int64_t(first_prompt.size())
                        : std::min<int64_t>(keep + (bos ? 1 : 0), int64_t(first_prompt.size()));
}

void print_shifts(const GenerateResult& r) {
  if (r.context_shifts > 0)
    std::fprintf(stderr, "straw: %lld context shift%s\n", static_cast<long long>(r.context_shifts),
                 r.context_shifts == 1 ? "" : "s");
}

int run_completion(Model& model, const Args& a, GenerateOptions gen) {
  std::string prompt = read_prompt(a);
  if (prompt.empty()) throw UsageError("a prompt is required (-p TEXT or -f FILE)");
  std::vector<int32_t> tokens = model.tokenize(prompt, true, !a.has("no-special"));
  Session session(model);
  set_keep(model, a, tokens, gen);
  g_generating.store(true);
  GenerateResult r = generate(session, tokens, gen, stream_text);
  g_generating.store(false);
  std::fputc('\n', stdout);
  print_speeds(r);
  print_speculation(gen, r);
  print_shifts(r);
  if (r.stop == GenerateResult::Stop::Context)
    std::fprintf(stderr,
                 "straw: the context is full (%lld tokens): use a larger --ctx, or "
                 "--context-shift\n",
                 static_cast<long long>(session.n_ctx()));
  return 0;
}

int run_chat(Model& model, const Args& a, GenerateOptions gen) {
  const Model::Impl& m = model.impl();
  const bool templated = model.has_chat_template();
  if (!templated)
    std::fprintf(stderr,
                 "straw: the model has no chat template straw recognises; each turn is "
                 "used as a plain completion prompt\n");
  if (gen.n_predict == 128 && !a.has("n-predict")) gen.n_predict = -1;
  Session session(model);
  bool first = true;
  std::string first_prompt = read_prompt(a);
  std::fprintf(stderr,
               "straw: chat; Ctrl-C stops a reply, Ctrl-D (or Ctrl-C at the prompt) quits\n");
  for (;;) {
    std::string user;
    if (first && !first_prompt.empty()) {
      user = first_prompt;
      std::fprintf(stderr, "> %s\n", user.c_str());
    } else {
      std::fprintf(stderr, "> ");
      g_interrupted.store(false);
      if (!std::getline(std::cin, user)) break;
    }
    if (user.empty()) continue;
    std::string text;
    if (templated) {
      std::vector<model::ChatMessage> msgs;
      if (first && a.has("system")) msgs.push_back({"system", a.require("system")});
      msgs.push_back({"user", user});
      text = model::format_turn(m.chat_template, msgs, first, m.chat_options);
    } else {
      text = user;
    }
    // BOS only at the start of the conversation; later turns continue the same cache.
    std::vector<int32_t> tokens = model.tokenize(text, first, true);
    if (first) set_keep(model, a, tokens, gen);
    g_interrupted.store(false);
    g_generating.store(true);
    GenerateResult r = generate(session, tokens, gen, stream_text);
    g_generating.store(false);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    print_speculation(gen, r);
    print_shifts(r);
    if (r.stop == GenerateResult::Stop::Context) {
      std::fprintf(stderr,
                   "straw: the context is full (%lld tokens); restart with a larger --ctx, or "
                   "with --context-shift\n",
                   static_cast<long long>(session.n_ctx()));
      break;
    }
    if (templated) {
      std::vector<int32_t> end =
          model.tokenize(model::assistant_terminator(m.chat_template), false, true);
      if (gen.context_shift) shift_context(session, int64_t(end.size()), gen.n_keep);
      if (session.n_past() + int64_t(end.size()) > session.n_ctx()) break;
      if (!end.empty()) session.eval(end);
    }
    first = false;
  }
  return 0;
}

int run_run(const Args& a) {
  ModelOptions mo = model_options_from(a);
  GenerateOptions gen;
  gen.n_predict = static_cast<int>(a.get_int("n-predict", 128));
  gen.sampling = sampling_from(a);
  SpecChoice spec = spec_from(a);
  Models models = load_models(mo, spec, a.has("quiet"));
  Model& model = *models.target;
  // One speculator for the whole run: in a chat, the draft model's cache follows the conversation.
  std::optional<Speculator> speculator;
  if (spec.on()) {
    speculator.emplace(model, spec.options);
    gen.speculator = &*speculator;
  }
  struct sigaction sa = {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: Ctrl-C interrupts a blocking read of the chat prompt
  sigaction(SIGINT, &sa, nullptr);
  return a.has("chat") ? run_chat(model, a, gen) : run_completion(model, a, gen);
}

}  // namespace

const Command kRun = {"run", "generate text from a prompt, or chat (--chat)",
                      "run -m MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] "
                      "[--min-p P] [--seed S] [--threads N] [--ctx N] [--chat] "
                      "[--spec draft|ngram|mtp|none] [--model-draft FILE] [--draft-max N]",
                      run_options, run_run};

}  // namespace straw::cli
