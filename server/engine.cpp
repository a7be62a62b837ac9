#include "engine.h"

#include <algorithm>

#include "http_error.h"

namespace straw::serve {

namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// ignore_eos: every token but the end-of-generation ones.
class BanTokens : public TokenConstraint {
 public:
  explicit BanTokens(const std::vector<int32_t>& banned) : banned_(banned) {}
  bool allows(int32_t t) override {
    return std::find(banned_.begin(), banned_.end(), t) == banned_.end();
  }
  void mask(std::span<uint8_t> allowed) override {
    for (int32_t t : banned_) allowed[size_t(t)] = 0;
  }
  void accept(int32_t) override {}
  bool done() const override { return false; }

 private:
  const std::vector<int32_t>& banned_;
};

}  // namespace

bool Request::next(GenEvent& event, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return false;
  event = std::move(events_.front());
  events_.pop_front();
  return true;
}

void Request::push(GenEvent event) {
  {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(event));
  }
  cv_.notify_all();
}

Engine::Engine(Model& model, const EngineOptions& options) : model_(model), options_(options) {
  if (options.parallel < 1)
    throw Error("--parallel must be at least 1, got " + std::to_string(options.parallel));
  if (options.prefill_chunk < 1) throw Error("the prefill chunk must be at least 1 token");
  n_ctx_ = options.ctx > 0 ? options.ctx : model.options().ctx;
  if (options.context_shift && !model.info().context_shift)
    throw Error("--context-shift is not possible with this model: " + model.info().architecture +
                " models with linear-attention layers keep a recurrent state that cannot forget "
                "tokens, and KV caches on the GPU cannot shift yet");
  if (options.context_shift && (options.n_keep < 0 || options.n_keep >= n_ctx_))
    throw Error("--keep must be 0 .. the context - 1 (" + std::to_string(n_ctx_ - 1) + "), got " +
                std::to_string(options.n_keep));
  slots_.resize(size_t(options.parallel));
  for (Slot& s : slots_) {
    s.session = std::make_unique<Session>(model, n_ctx_);
    if (options.speculative.method != SpecMethod::None) {
      s.spec = std::make_unique<Speculator>(model, options.speculative, n_ctx_);
      s.spec->attach(*s.session);
    }
  }
  for (int32_t t = 0; t < int32_t(model.n_vocab()); ++t)
    if (model.is_end_of_generation(t)) eog_.push_back(t);
  stats_.slots = options.parallel;
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  shutdown(std::chrono::milliseconds(0));
}

std::shared_ptr<Request> Engine::submit(GenRequest request) {
  if (request.prompt.empty()) reject(400, "the prompt is empty");
  if (int64_t(request.prompt.size()) >= n_ctx_)
    reject(400, "the prompt has ", request.prompt.size(), " tokens but the context holds ", n_ctx_,
           " (and at least one token must be generated): shorten it or start the server with a "
           "larger --ctx");
  auto r = std::make_shared<Request>();
  r->params_ = std::move(request);
  r->submitted_ = Clock::now();
  {
    std::lock_guard lock(mu_);
    if (stopping_) reject(503, "the server is shutting down");
    queue_.push_back(r);
  }
  cv_.notify_all();
  return r;
}

void Engine::shutdown(std::chrono::milliseconds grace) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      deadline_ = Clock::now() + grace;
      for (auto& r : queue_)
        r->push({GenEvent::Kind::Error, {}, {}, {}, {}, {}, 503, "the server is shutting down"});
      queue_.clear();
    }
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mu_);
  EngineStats s = stats_;
  s.queue_length = int(queue_.size());
  return s;
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      const bool busy = std::any_of(slots_.begin(), slots_.end(),
                                    [](const Slot& s) { return s.state != State::Idle; });
      if (stopping_ && (!busy || Clock::now() >= deadline_)) break;
      if (!busy) cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    }
    assign_waiting();
    if (!step()) {
      // Nothing to evaluate (all requests were cancelled): wait for more.
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(50),
                   [&] { return stopping_ || !queue_.empty(); });
    }
  }
  for (Slot& s : slots_)
    if (s.state != State::Idle) fail_slot(s, 503, "the server is shutting down");
}

void Engine::assign_waiting() {
  std::unique_lock lock(mu_);
  while (!queue_.empty()) {
    // The free slot whose cache shares the longest prefix with the prompt; ties: least recently
    // used (its cache is the least likely to be wanted again).
    Slot* best = nullptr;
    int64_t best_keep = -1;
    const std::vector<int32_t>& prompt = queue_.front()->params_.prompt;
    for (Slot& s : slots_) {
      if (s.state != State::Idle) continue;
      const int64_t keep = options_.cache_prompt ? s.session->common_prefix(prompt) : 0;
      if (keep > best_keep || (keep == best_keep && s.last_used < best->last_used)) {
        best = &s;
        best_keep = keep;
      }
    }
    if (!best) break;
    std::shared_ptr<Request> r = std::move(queue_.front());
    queue_.pop_front();
    if (r->cancelled()) {
      ++stats_.requests_cancelled;
      continue;
    }
    Slot& s = *best;
    GenRequest& p = r->params_;
    // At least the prompt's last token is evaluated again: its logits give the first token.
    const int64_t keep = std::min<int64_t>(best_keep, int64_t(p.prompt.size()) - 1);
    s.session->truncate(keep);
    s.pending.assign(p.prompt.begin() + keep, p.prompt.end());
    s.pending_done = 0;
    s.usage = {int64_t(p.prompt.size()), keep, 0};
    s.sampler.emplace(model_, p.sampling);
    for (int32_t t : p.prompt) s.sampler->accept(t);
    s.text.emplace(p.stop);
    s.ban_eog.reset();
    if (p.ignore_eos && !p.constraint) s.ban_eog = std::make_unique<BanTokens>(eog_);
    s.logprobs.clear();
    s.batch.clear();
    s.n_proposed = 0;
    s.spec_timings = {};
    s.taken = Clock::now();
    s.req = std::move(r);
    s.state = State::Prefill;
    stats_.prompt_tokens_cached += uint64_t(keep);
    ++stats_.busy_slots;
  }
}

bool Engine::step() {
  // Cancelled requests free their slots first.
  for (Slot& s : slots_)
    if (s.state != State::Idle && s.req->cancelled()) {
      s.state = State::Idle;
      s.req.reset();
      s.last_used = Clock::now();
      std::lock_guard lock(mu_);
      ++stats_.requests_cancelled;
      --stats_.busy_slots;
    }

  // Every decoding slot's last token (and its proposals), then prompt chunks in the room left.
  // Proposals only take room that leaves one token for each decoding slot after this one, and
  // while a prompt waits, half the rest stays for its chunk (proposals must not starve prefill).
  std::vector<BatchItem> items;
  std::vector<Slot*> in_step;
  int room = model_.options().ubatch;
  int decoding = 0;
  int decoders_left = int(std::count_if(slots_.begin(), slots_.end(),
                                        [](const Slot& s) { return s.state == State::Decode; }));
  const bool prefilling = std::any_of(slots_.begin(), slots_.end(),
                                      [](const Slot& s) { return s.state == State::Prefill; });
  const int reserved =
      prefilling ? std::min(options_.prefill_chunk, std::max(0, room - decoders_left) / 2) : 0;
  for (Slot& s : slots_) {
    if (s.state != State::Decode || room <= 0) continue;
    try {
      propose(s, room - decoders_left - reserved);
    } catch (const std::exception& e) {
      fail_slot(s, 500, std::string("speculative proposal failed: ") + e.what());
      --decoders_left;
      continue;
    }
    items.push_back({s.session.get(), s.batch, s.n_proposed > 0});
    in_step.push_back(&s);
    room -= int(s.batch.size());
    --decoders_left;
    ++decoding;
  }
  for (Slot& s : slots_) {
    if (s.state != State::Prefill || room <= 0) continue;
    const int limit = decoding > 0 ? std::min(room, options_.prefill_chunk) : room;
    const size_t n = std::min<size_t>(size_t(limit), s.pending.size() - s.pending_done);
    items.push_back({s.session.get(), std::span(s.pending).subspan(s.pending_done, n), false});
    in_step.push_back(&s);
    room -= int(n);
  }
  if (items.empty()) return false;

  const Clock::time_point t0 = Clock::now();
  try {
    eval_batch(items);
  } catch (const std::exception& e) {
    for (Slot* s : in_step) {
      s->session->reset();
      fail_slot(*s, 500, std::string("evaluation failed: ") + e.what());
    }
    return true;
  }
  const Clock::time_point t1 = Clock::now();

  int generated = 0;
  uint64_t prompt_evaluated = 0;
  uint64_t spec_steps = 0, spec_proposed = 0, spec_accepted = 0;
  for (size_t i = 0; i < in_step.size(); ++i) {
    Slot& s = *in_step[i];
    if (s.state == State::Prefill) {
      s.pending_done += items[i].tokens.size();
      prompt_evaluated += items[i].tokens.size();
      if (s.pending_done < s.pending.size()) continue;  // more of the prompt next step
    }
    const int64_t accepted_before = s.spec_timings.draft_n_accepted;
    const size_t proposed = s.state == State::Decode ? s.n_proposed : 0;
    generated += sample(s);
    if (proposed > 0) {
      ++spec_steps;
      spec_proposed += proposed;
      spec_accepted += uint64_t(s.spec_timings.draft_n_accepted - accepted_before);
    }
  }
  std::lock_guard lock(mu_);
  ++stats_.steps;
  stats_.spec_steps += spec_steps;
  stats_.spec_proposed += spec_proposed;
  stats_.spec_accepted += spec_accepted;
  stats_.busy_seconds += std::chrono::duration<double>(t1 - t0).count();
  stats_.prompt_tokens += prompt_evaluated;
  stats_.completion_tokens += uint64_t(generated);
  recent_.push_back({t1, generated});
  while (!recent_.empty() && t1 - recent_.front().first > std::chrono::seconds(10))
    recent_.pop_front();
  int n = 0;
  for (const auto& r : recent_) n += r.second;
  const double span =
      recent_.size() > 1 ? std::chrono::duration<double>(t1 - recent_.front().first).count() : 0;
  stats_.recent_tokens_per_second = span > 0 ? double(n - recent_.front().second) / span : 0;
  return true;
}

void Engine::propose(Slot& s, int max_tokens) {
  s.batch.assign(1, s.last);
  s.n_proposed = 0;
  if (!s.spec) return;
  const GenRequest& p = s.req->params_;
  // Proposals fit in the context after `last`, and beyond the tokens still wanted they are waste.
  int64_t limit = std::min<int64_t>(max_tokens, n_ctx_ - s.session->n_past() - 1);
  if (p.max_tokens >= 0) limit = std::min(limit, p.max_tokens - s.usage.completion_tokens);
  if (limit <= 0) return;
  const std::span<const int32_t> cached = s.session->tokens();
  s.sequence.assign(cached.begin(), cached.end());
  s.sequence.push_back(s.last);
  const std::span<const int32_t> proposals = s.spec->propose(s.sequence, *s.sampler, int(limit));
  s.batch.insert(s.batch.end(), proposals.begin(), proposals.end());
  s.n_proposed = proposals.size();
  s.spec_timings.draft_n += int64_t(proposals.size());
}

int Engine::sample(Slot& s) {
  GenRequest& p = s.req->params_;
  if (s.state == State::Prefill) {
    s.first_token = Clock::now();
    s.state = State::Decode;
    s.n_proposed = 0;
  }
  TokenConstraint* constraint = p.constraint ? p.constraint.get() : s.ban_eog.get();
  const int64_t before = s.usage.completion_tokens;
  // Row i holds the logits after last + proposals[0, i): each accepted proposal is taken and the
  // next row read; the first token the target picks itself ends the step, and the rows after it
  // (rejected proposals) leave the cache.
  const size_t k = s.n_proposed;
  size_t unused = k;
  auto drop_unused = [&] {
    if (unused > 0) s.session->truncate(s.session->n_past() - int64_t(unused));
    unused = 0;
  };
  for (size_t i = 0;; ++i) {
    const std::span<const float> logits = k > 0 ? s.session->logits(int(i)) : s.session->logits();
    const int32_t token = s.spec ? s.spec->pick(*s.sampler, logits, i, constraint)
                                 : s.sampler->sample(logits, constraint);
    const bool accepted = i < k && token == s.batch[i + 1];
    if (accepted) {
      --unused;
      ++s.spec_timings.draft_n_accepted;
    } else {
      drop_unused();
    }
    if (!take(s, token, logits, accepted)) break;
    if (!accepted) {
      s.last = token;
      break;
    }
  }
  drop_unused();
  if (s.spec) s.spec->finish_step();
  s.n_proposed = 0;
  return int(s.usage.completion_tokens - before);
}

bool Engine::take(Slot& s, int32_t token, std::span<const float> logits, bool in_cache) {
  GenRequest& p = s.req->params_;
  if (std::find(eog_.begin(), eog_.end(), token) != eog_.end()) {
    finish(s, "stop");
    return false;
  }
  if (p.constraint) p.constraint->accept(token);
  s.sampler->accept(token);
  ++s.usage.completion_tokens;
  if (p.top_logprobs >= 0) {
    TokenLogprobs lp;
    lp.chosen = {token, model_.token_to_piece(token), token_logprob(logits, token)};
    for (const TokenLogprob& t : top_logprobs(logits, p.top_logprobs))
      lp.top.push_back({t.token, model_.token_to_piece(t.token), t.logprob});
    s.logprobs.push_back(std::move(lp));
  }
  std::string text = s.text->push(model_.token_to_piece(token));
  if (s.text->stopped()) {
    finish(s, "stop", std::move(text));
    return false;
  }
  if (!text.empty() || !s.logprobs.empty()) {
    GenEvent e;
    e.text = std::move(text);
    e.logprobs = std::move(s.logprobs);
    s.logprobs.clear();
    s.req->push(std::move(e));
  }
  if (p.max_tokens >= 0 && s.usage.completion_tokens >= p.max_tokens) {
    finish(s, "length");
    return false;
  }
  // A token the target picked is evaluated in the next step: it needs a free position.
  if (!in_cache && s.session->n_past() >= s.session->n_ctx()) {
    if (!options_.context_shift) {
      finish(s, "length");
      return false;
    }
    shift_context(*s.session, 1, options_.n_keep);
    ++s.usage.context_shifts;
  }
  return true;
}

void Engine::finish(Slot& s, const char* reason, std::string text) {
  GenEvent e;
  e.kind = GenEvent::Kind::Done;
  e.text = std::move(text) + s.text->finish();
  e.logprobs = std::move(s.logprobs);
  s.logprobs.clear();
  e.finish_reason = reason;
  e.usage = s.usage;
  const Clock::time_point now = Clock::now();
  e.timings.queue_ms = ms_between(s.req->submitted_, s.taken);
  e.timings.prompt_ms = ms_between(s.taken, s.first_token);
  e.timings.predict_ms = ms_between(s.first_token, now);
  e.timings.draft_n = s.spec_timings.draft_n;
  e.timings.draft_n_accepted = s.spec_timings.draft_n_accepted;
  s.req->push(std::move(e));
  s.req.reset();
  s.state = State::Idle;
  s.last_used = now;
  std::lock_guard lock(mu_);
  ++stats_.requests_done;
  --stats_.busy_slots;
}

void Engine::fail_slot(Slot& s, int status, const std::string& message) {
  if (s.req) s.req->push({GenEvent::Kind::Error, {}, {}, {}, {}, {}, status, message});
  s.req.reset();
  s.state = State::Idle;
  s.last_used = Clock::now();
  std::lock_guard lock(mu_);
  --stats_.busy_slots;
}

}  // namespace straw::serve
