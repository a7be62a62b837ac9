// straw serve: the OpenAI-compatible HTTP server (server/). This file only maps the command line to
// serve::ServerOptions and turns SIGINT/SIGTERM into a graceful stop.
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <memory>

#include "cli.h"
#include "model_flags.h"
#include "server.h"
#include "spec_flags.h"

namespace straw::cli {
namespace {

std::vector<Option> serve_options() {
  std::vector<Option> o = model_options();
  std::vector<Option> more = {
      {"host", 0, true, "ADDR  address to listen on (default 127.0.0.1; 0.0.0.0: every interface)"},
      {"port", 0, true, "N  port (default 8080; 0: any free port)"},
      {"parallel", 0, true, "N  slots: requests generated at once, decoded together (default 4)"},
      {"np", 0, true, "N  the same as --parallel (llama-server's name)"},
      {"api-key", 0, true, "KEY  require \"Authorization: Bearer KEY\" (all but / and /health)"},
      {"alias", 0, true, "NAME  the model's name in the API (default: general.name)"},
      {"max-body", 0, true, "SIZE  largest request body (default 8MiB; larger: 413)"},
      {"prefill-chunk", 0, true,
       "N  prompt tokens per step while other requests decode (default 256)"},
      {"no-cache-prompt", 0, false, "always evaluate whole prompts (no reuse of slot caches)"},
      {"context-shift", 0, false,
       "when a slot's context fills, drop the oldest half of its tokens after --keep and go on "
       "(default: finish with \"length\")"},
      {"keep", 0, true,
       "N  with --context-shift: tokens at the start a shift never drops (default 0)"},
      {"timeout", 0, true, "S  seconds a request body may take to arrive (default 15)"},
      {"shutdown-grace", 0, true,
       "S  on SIGINT/SIGTERM, seconds running requests get to finish (default 5)"},
  };
  o.insert(o.end(), more.begin(), more.end());
  std::vector<Option> spec = spec_options();
  o.insert(o.end(), spec.begin(), spec.end());
  return o;
}

int run_serve(const Args& a) {
  serve::ServerOptions so;
  ModelOptions mo = model_options_from(a);
  so.host = a.get_or("host", "127.0.0.1");
  so.port = int(a.get_int("port", 8080));
  if (so.port < 0 || so.port > 65535) throw UsageError("--port must be 0..65535");
  so.engine.parallel = int(a.get_int("parallel", a.get_int("np", 4)));
  if (so.engine.parallel < 1 || so.engine.parallel > 256)
    throw UsageError("--parallel must be 1..256");
  so.engine.ctx = mo.ctx;
  so.engine.prefill_chunk = int(a.get_int("prefill-chunk", 256));
  if (so.engine.prefill_chunk < 1) throw UsageError("--prefill-chunk must be >= 1");
  so.engine.cache_prompt = !a.has("no-cache-prompt");
  so.engine.context_shift = a.has("context-shift");
  so.engine.n_keep = a.get_int("keep", 0);
  if (a.has("keep") && !so.engine.context_shift)
    throw UsageError("--keep goes with --context-shift");
  if (so.engine.n_keep < 0) throw UsageError("--keep must be >= 0");
  so.api_key = a.get_or("api-key", "");
  so.alias = a.get_or("alias", "");
  if (a.has("max-body")) so.max_body = size_t(parse_size(a.require("max-body")));
  so.read_timeout_s = int(a.get_int("timeout", 15));
  if (so.read_timeout_s < 1) throw UsageError("--timeout must be >= 1");
  const double grace = a.get_float("shutdown-grace", 5);
  if (grace < 0) throw UsageError("--shutdown-grace must be >= 0");
  // The memory check counts one KV cache per slot.
  mo.sessions = so.engine.parallel;
  // Speculative decoding: every slot proposes with its own speculator; a draft model is loaded
  // first (the planner places it on the GPU before the target) and the target gets the budget it
  // left.
  const SpecChoice spec = spec_from(a);
  so.engine.speculative = spec.options;
  const bool quiet = a.has("quiet");
  // The server owns the loaded draft model; the target's loader reads its placement.
  auto draft = std::make_shared<const Model*>(nullptr);
  if (spec.options.method == SpecMethod::Draft)
    so.load_draft = [mo, spec, quiet, draft] {
      std::unique_ptr<Model> d = load_draft_model(mo, spec, quiet);
      *draft = d.get();
      return d;
    };
  so.load = [mo, quiet, draft] { return load_model_verbose(after_draft(mo, *draft), quiet); };

  // SIGINT/SIGTERM go to one watcher thread (blocked everywhere else, before any thread starts).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);  // sent by main when the server stopped on its own
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  serve::Server server(so);
  const int port = server.bind();
  std::fprintf(stderr, "straw serve: listening on http://%s:%d (loading the model)\n",
               so.host.c_str(), port);
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig == SIGUSR1) return;
    std::fprintf(stderr, "straw serve: %s: finishing running requests, then stopping\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    server.stop(std::chrono::milliseconds(int64_t(grace * 1000)));
  });
  const int rc = server.serve();
  pthread_kill(watcher.native_handle(), SIGUSR1);
  watcher.join();
  std::fprintf(stderr, "straw serve: stopped\n");
  return rc;
}

}  // namespace

const Command kServe = {
    "serve", "OpenAI-compatible HTTP server with batched decoding",
    "serve -m MODEL [--host 127.0.0.1] [--port 8080] [--parallel N] [--ctx N] "
    "[--api-key KEY] [--alias NAME] [--max-body SIZE] [--spec draft|ngram|mtp|none] "
    "[--model-draft FILE]",
    serve_options, run_serve};

}  // namespace straw::cli
