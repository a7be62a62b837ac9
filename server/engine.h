// The server's generation engine: N slots (one Session each) decoded together in batched steps.
//
// One engine thread owns the model's evaluation. Each step it (1) moves waiting requests into free
// slots (FIFO), choosing the slot whose KV cache shares the longest prefix with the prompt, so the
// next turn of a chat only evaluates its new tokens; (2) evaluates, in one straw::eval_batch, the
// last sampled token of every decoding slot plus a chunk of one or more prompts (chunks are small
// while others decode, so streams keep flowing); (3) samples each slot's next token and publishes
// text, which the HTTP threads read from the request's queue. A request whose client went away is
// cancelled and frees its slot at the next step.
//
// Speculative decoding (EngineOptions::speculative): each slot has its own straw::Speculator. A
// decoding slot's item in the step is its last token plus the tokens its speculator proposes, with
// every row's logits; after the step the slot takes the accepted proposals and the target's own
// next token (Speculator::pick) and truncates its session to drop the rejected rows. Other slots
// decode and prefill in the same step as usual.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "straw/straw.h"
#include "text_stream.h"

namespace straw::serve {

// One candidate token with its log-probability and bytes.
struct TokenProb {
  int32_t token = 0;
  std::string piece;  // the token's bytes (may be part of a UTF-8 character)
  float logprob = 0;
};

// A generated token's log-probability and the most probable alternatives at its position.
struct TokenLogprobs {
  TokenProb chosen;
  std::vector<TokenProb> top;  // most probable first
};

struct GenRequest {
  std::vector<int32_t> prompt;  // evaluated as is (BOS / chat template already applied)
  int64_t max_tokens = -1;      // tokens to generate at most; -1: until the context is full
  SamplingOptions sampling;
  std::vector<std::string> stop;  // stop strings (not included in the output)
  int top_logprobs = -1;          // -1: no log-probabilities; n >= 0: each token's + n alternatives
  std::unique_ptr<TokenConstraint> constraint;  // e.g. a JSON schema; null: none
  bool ignore_eos = false;  // never sample end-of-generation tokens (benchmarks; llama-server's
                            // ignore_eos); not with a constraint, which needs them to end
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens reused from a slot's cache
  int64_t completion_tokens = 0;
  int64_t context_shifts = 0;  // context shifts while generating (EngineOptions::context_shift)
};

struct Timings {
  double queue_ms = 0;           // submitted -> taken by a slot
  double prompt_ms = 0;          // taken -> first token sampled
  double predict_ms = 0;         // first token -> last token
  int64_t draft_n = 0;           // speculative decoding: tokens proposed (llama-server's name)
  int64_t draft_n_accepted = 0;  // of which accepted
};

struct GenEvent {
  enum class Kind { Text, Done, Error } kind = Kind::Text;
  std::string text;                     // Text: new output; Done: the last of it (may be empty)
  std::vector<TokenLogprobs> logprobs;  // of the tokens generated since the previous event
  std::string finish_reason;            // Done: "stop" or "length"
  Usage usage;                          // Done
  Timings timings;                      // Done
  int status = 0;                       // Error: HTTP status
  std::string error;                    // Error: message
};

// A submitted request, shared by the HTTP thread that reads its events and the engine thread.
class Request {
 public:
  // Waits up to `timeout` for the next event; false on timeout.
  bool next(GenEvent& event, std::chrono::milliseconds timeout);
  // The client went away: the engine frees the slot at its next step.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class Engine;
  void push(GenEvent event);

  GenRequest params_;
  std::chrono::steady_clock::time_point submitted_;
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<GenEvent> events_;
};

struct EngineOptions {
  int parallel = 4;          // slots: sequences decoded together
  int64_t ctx = 0;           // context of each slot; 0: the model's (ModelOptions::ctx)
  int prefill_chunk = 256;   // prompt tokens per step while other slots decode (at most ubatch)
  bool cache_prompt = true;  // reuse a slot's cached prefix
  // Speculative decoding for every slot (method None: off). A draft model is shared by the slots
  // (each has its own session of it) and must outlive the engine.
  SpeculativeOptions speculative;
  // Context shift (llama-server's --context-shift): a slot whose context fills keeps its first
  // n_keep tokens, drops the oldest half of the rest and goes on (straw::shift_context); off: the
  // request finishes with "length". Models without ModelInfo::context_shift refuse it.
  bool context_shift = false;
  int64_t n_keep = 0;
};

// Counters for /metrics (monotonic totals, and the state now).
struct EngineStats {
  uint64_t requests_done = 0;
  uint64_t requests_cancelled = 0;
  uint64_t prompt_tokens = 0;         // evaluated prompt tokens
  uint64_t prompt_tokens_cached = 0;  // reused from slot caches
  uint64_t completion_tokens = 0;
  uint64_t steps = 0;
  double busy_seconds = 0;              // time spent in forward steps
  double recent_tokens_per_second = 0;  // generated tokens/s over the last few seconds
  int queue_length = 0;
  int busy_slots = 0;
  int slots = 0;
  // Speculative decoding, summed over the slots.
  uint64_t spec_steps = 0;     // verifications (a slot's item carried proposals)
  uint64_t spec_proposed = 0;  // tokens proposed
  uint64_t spec_accepted = 0;  // proposals accepted
};

class Engine {
 public:
  Engine(Model& model, const EngineOptions& options);
  ~Engine();  // shutdown(0)

  int64_t n_ctx() const { return n_ctx_; }  // context of each slot
  int parallel() const { return int(slots_.size()); }

  // Queues a request (FIFO). Throws HttpError: 503 when the engine is shutting down, 400 when the
  // prompt is empty or does not leave room for one token in a slot's context.
  std::shared_ptr<Request> submit(GenRequest request);

  // Stops taking requests, fails the queued ones, lets running ones finish for up to `grace`, then
  // cancels them, and joins the engine thread.
  void shutdown(std::chrono::milliseconds grace);

  EngineStats stats() const;

 private:
  enum class State { Idle, Prefill, Decode };
  struct Slot {
    std::unique_ptr<Session> session;
    std::shared_ptr<Request> req;
    State state = State::Idle;
    std::optional<Sampler> sampler;
    std::optional<TextStream> text;
    std::vector<int32_t> pending;  // prompt tokens still to evaluate
    size_t pending_done = 0;
    int32_t last = -1;                 // sampled token to evaluate next (Decode)
    std::unique_ptr<Speculator> spec;  // speculative decoding; null: off
    std::vector<int32_t> batch;        // Decode: last + proposals, evaluated in this step
    size_t n_proposed = 0;             // proposals in `batch` (batch[1..])
    std::vector<int32_t> sequence;     // scratch: the cache's tokens + last
    Timings spec_timings;              // this request's draft_n / draft_n_accepted
    Usage usage;
    std::vector<TokenLogprobs> logprobs;       // not yet published
    std::unique_ptr<TokenConstraint> ban_eog;  // ignore_eos
    std::chrono::steady_clock::time_point taken, first_token, last_used;
  };

  void loop();
  void assign_waiting();
  bool step();
  // After a step: the slot's next token(s), from its rows of logits; returns the tokens taken.
  int sample(Slot& s);
  // Takes one token (publishes text, applies stop conditions); false when the slot finished.
  // `in_cache`: an accepted proposal, already evaluated (no free position needed for it).
  bool take(Slot& s, int32_t token, std::span<const float> logits, bool in_cache);
  // Proposals for a decoding slot, at most max_tokens.
  void propose(Slot& s, int max_tokens);
  // Publishes the Done event (text: output released together with it) and frees the slot.
  void finish(Slot& s, const char* reason, std::string text = {});
  void fail_slot(Slot& s, int status, const std::string& message);

  Model& model_;
  EngineOptions options_;
  int64_t n_ctx_ = 0;
  std::vector<Slot> slots_;
  std::vector<int32_t> eog_;  // end-of-generation token ids

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Request>> queue_;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point deadline_;
  EngineStats stats_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, int>> recent_;  // (step end, tokens)
  std::thread thread_;
};

}  // namespace straw::serve
