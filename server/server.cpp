// The HTTP side of straw serve (cpp-httplib): routes, authentication, limits, streaming, logging.
#include "server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "http_error.h"
#include "json_constraint.h"
#include "openai.h"

namespace straw::serve {

extern const char kChatPage[];  // chat_page.html, compiled in (generated chat_page.cpp)

namespace {

using Clock = std::chrono::steady_clock;

// What the request log line reports about the request being answered on this thread (cpp-httplib
// runs a request's handler, its content provider and the logger on one thread).
struct RequestLog {
  Clock::time_point start;
  int64_t prompt_tokens = -1;
  int64_t completion_tokens = -1;
};
thread_local RequestLog t_log;

// The connection's socket, found by its peer address, so that a handler can notice a client that
// went away while it waits (cpp-httplib only notices on the next write).
int find_connection(const std::string& addr, int port, int local_port) {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  int found = -1;
  while (dirent* e = readdir(d)) {
    const int fd = std::atoi(e->d_name);
    struct stat st;
    if (fd <= 2 || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage peer{}, self{};
    socklen_t pl = sizeof(peer), sl = sizeof(self);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&self), &sl) != 0) continue;
    char host[INET6_ADDRSTRLEN] = {};
    int pport = 0, sport = 0;
    if (peer.ss_family == AF_INET) {
      auto* p = reinterpret_cast<sockaddr_in*>(&peer);
      inet_ntop(AF_INET, &p->sin_addr, host, sizeof(host));
      pport = ntohs(p->sin_port);
      sport = ntohs(reinterpret_cast<sockaddr_in*>(&self)->sin_port);
    } else if (peer.ss_family == AF_INET6) {
      auto* p = reinterpret_cast<sockaddr_in6*>(&peer);
      inet_ntop(AF_INET6, &p->sin6_addr, host, sizeof(host));
      pport = ntohs(p->sin6_port);
      sport = ntohs(reinterpret_cast<sockaddr_in6*>(&self)->sin6_port);
    }
    if (pport == port && sport == local_port && addr == host) {
      found = fd;
      break;
    }
  }
  closedir(d);
  return found;
}

// Whether the peer closed (or reset) the connection; data waiting to be read means it is alive.
bool peer_gone(int fd) {
  if (fd < 0) return false;
  char c;
  const ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

json parse_body(const httplib::Request& req) {
  if (req.body.empty()) reject(400, "the request body is empty (a JSON object is expected)");
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded()) reject(400, "the request body is not valid JSON (or not valid UTF-8)");
  if (!body.is_object()) reject(400, "the request body must be a JSON object");
  return body;
}

void send_json(httplib::Response& res, const json& j, int status = 200) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message,
                const std::string& type) {
  send_json(res, error_json(status, message, type), status);
}

}  // namespace

struct Server::Impl {
  ServerOptions o;
  httplib::Server http;
  int port = 0;
  std::unique_ptr<Model> draft;  // speculative decoding's draft model (before the engine: it
                                 // outlives the slots' sessions of it)
  std::unique_ptr<Model> model;
  std::unique_ptr<Engine> engine;
  ModelContext ctx;
  std::atomic<bool> ready{false};
  std::atomic<bool> stopping{false};
  std::mutex engine_mu;  // the engine's creation (loader thread) against stop()
  std::string load_error;
  std::thread loader;

  std::mutex metrics_mu;
  std::map<std::pair<std::string, int>, uint64_t> requests;  // (route, status) -> count

  void log_line(const std::string& line) const {
    if (o.log)
      o.log(line);
    else
      std::fprintf(stderr, "%s\n", line.c_str());
  }

  void load();
  void routes();
  void generate(const httplib::Request& req, httplib::Response& res, Endpoint ep);
  void stream(httplib::Response& res, std::shared_ptr<Request> r, const ResponseShape& shape,
              int fd);
  std::string metrics_text();
};

void Server::Impl::load() {
  try {
    // The draft model first: the planner places it on the GPU before the target.
    if (o.load_draft) {
      draft = o.load_draft();
      o.engine.speculative.draft_model = draft.get();
    }
    model = o.load();
    ctx.model = model.get();
    ctx.name = o.alias.empty() ? model->info().name : o.alias;
    // response_format json_object / json_schema: constrained decoding over the vocabulary's trie
    // (built once; each request compiles its schema).
    std::shared_ptr<const TokenTrie> vocab = TokenTrie::from_model(*model);
    ctx.constraint = [vocab](const json& rf) -> std::unique_ptr<TokenConstraint> {
      std::shared_ptr<const JsonSchema> schema;
      try {
        schema = schema_for_response_format(rf);
      } catch (const std::exception& e) {
        throw HttpError(400, e.what());
      }
      if (!schema) return nullptr;
      return std::make_unique<JsonConstraint>(schema, vocab);
    };
    std::lock_guard lock(engine_mu);
    if (stopping.load()) return;
    engine = std::make_unique<Engine>(*model, o.engine);
    ctx.n_ctx = engine->n_ctx();
    ready.store(true);
    log_line("straw serve: model loaded; " + std::to_string(engine->parallel()) + " slots of " +
             std::to_string(engine->n_ctx()) + " tokens; listening on http://" + o.host + ":" +
             std::to_string(port));
  } catch (const std::exception& e) {
    load_error = e.what();
    log_line(std::string("straw serve: the model could not be loaded: ") + e.what());
    http.stop();
  }
}

void Server::Impl::routes() {
  http.new_task_queue = [n = o.http_threads] { return new httplib::ThreadPool(size_t(n)); };
  http.set_payload_max_length(o.max_body);
  http.set_read_timeout(o.read_timeout_s, 0);
  http.set_write_timeout(30, 0);
  http.set_keep_alive_timeout(5);

  // Before routing: the log record, the API key, and 503 while the model loads.
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    t_log = {Clock::now(), -1, -1};
    const bool open = req.path == "/" || req.path == "/health";
    if (!o.api_key.empty() && !open &&
        req.get_header_value("Authorization") != "Bearer " + o.api_key) {
      send_error(res, 401,
                 req.has_header("Authorization") ? "invalid API key"
                                                 : "missing API key (Authorization: Bearer KEY)",
                 "authentication_error");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!ready.load() && req.path != "/") {
      send_json(
          res,
          {{"status", "loading model"},
           {"error",
            {{"message", "the model is loading"}, {"type", "unavailable_error"}, {"code", 503}}}},
          503);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        try {
          std::rethrow_exception(ep);
        } catch (const HttpError& e) {
          send_error(res, e.status(), e.what(), e.type());
        } catch (const Error& e) {
          send_error(res, 400, e.what(), "invalid_request_error");
        } catch (const std::exception& e) {
          send_error(res, 500, e.what(), "server_error");
        } catch (...) {
          send_error(res, 500, "unknown error", "server_error");
        }
      });
  // Errors cpp-httplib answers itself (404, 413, 400 on a malformed request) get a JSON body.
  http.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty() || res.is_chunked_content_provider_)
          return httplib::Server::HandlerResponse::Unhandled;
        const int s = res.status;
        send_error(res, s,
                   s == 404   ? "no such endpoint: " + req.method + " " + req.path
                   : s == 413 ? "the request body is larger than --max-body"
                              : "bad request",
                   s == 404 ? "not_found_error" : "invalid_request_error");
        return httplib::Server::HandlerResponse::Handled;
      }));
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t_log.start).count();
    std::string tokens = "-";
    if (t_log.prompt_tokens >= 0)
      tokens = std::to_string(t_log.prompt_tokens) + "+" +
               (t_log.completion_tokens >= 0 ? std::to_string(t_log.completion_tokens) : "0");
    char line[512];
    std::snprintf(line, sizeof(line), "%s %s %d tokens=%s %.1f ms", req.method.c_str(),
                  req.path.substr(0, 200).c_str(), res.status, tokens.c_str(), ms);
    log_line(line);
    std::lock_guard lock(metrics_mu);
    // Known paths only as labels: arbitrary ones would grow the metric without bound.
    static const char* const known[] = {"/",
                                        "/health",
                                        "/metrics",
                                        "/v1/models",
                                        "/models",
                                        "/v1/chat/completions",
                                        "/chat/completions",
                                        "/v1/completions",
                                        "/completions",
                                        "/tokenize",
                                        "/detokenize"};
    const bool is_known =
        std::find(std::begin(known), std::end(known), req.path) != std::end(known);
    ++requests[std::make_pair(is_known ? req.path : std::string("other"), res.status)];
  });

  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kChatPage, "text/html; charset=utf-8");
  });
  http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, {{"status", "ok"}});
  });
  auto models = [this](const httplib::Request&, httplib::Response& res) {
    const ModelInfo& i = model->info();
    send_json(res, {{"object", "list"},
                    {"data", json::array({{{"id", ctx.name},
                                           {"object", "model"},
                                           {"created", int64_t(std::time(nullptr))},
                                           {"owned_by", "straw"},
                                           {"meta",
                                            {{"architecture", i.architecture},
                                             {"n_vocab", i.n_vocab},
                                             {"n_ctx_train", i.n_ctx_train},
                                             {"n_ctx", ctx.n_ctx},
                                             {"n_params_bytes", i.weight_bytes},
                                             {"placement", i.placement}}}}})}});
  };
  http.Get("/v1/models", models);
  http.Get("/models", models);
  auto chat = [this](const httplib::Request& q, httplib::Response& r) {
    generate(q, r, Endpoint::Chat);
  };
  auto completion = [this](const httplib::Request& q, httplib::Response& r) {
    generate(q, r, Endpoint::Completion);
  };
  http.Post("/v1/chat/completions", chat);
  http.Post("/chat/completions", chat);
  http.Post("/v1/completions", completion);
  http.Post("/completions", completion);
  http.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
    const json body = parse_body(req);
    if (!body.contains("content") || !body["content"].is_string())
      reject(400, "'content' must be a string");
    const bool add_special = body.value("add_special", false);
    const bool parse_special = body.value("parse_special", true);
    const bool pieces = body.value("with_pieces", false);
    json tokens = json::array();
    for (int32_t t :
         model->tokenize(body["content"].get<std::string>(), add_special, parse_special))
      tokens.push_back(pieces ? json{{"id", t}, {"piece", model->token_to_piece(t, true)}}
                              : json(t));
    send_json(res, {{"tokens", tokens}});
  });
  http.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
    const json body = parse_body(req);
    if (!body.contains("tokens") || !body["tokens"].is_array())
      reject(400, "'tokens' must be an array of token ids");
    std::vector<int32_t> ids;
    for (const json& t : body["tokens"]) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= model->n_vocab())
        reject(400, "'tokens' holds ", t.dump(), ", not a token id of this model (0..",
               model->n_vocab() - 1, ")");
      ids.push_back(int32_t(t.get<int64_t>()));
    }
    send_json(res, {{"content", model->detokenize(ids)}});
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
}

void Server::Impl::generate(const httplib::Request& req, httplib::Response& res, Endpoint ep) {
  const json body = parse_body(req);
  ParsedRequest p =
      ep == Endpoint::Chat ? parse_chat_request(body, ctx) : parse_completion_request(body, ctx);
  t_log.prompt_tokens = int64_t(p.gen.prompt.size());
  const ResponseShape shape = p.shape;
  std::shared_ptr<Request> r = engine->submit(std::move(p.gen));
  const int fd = find_connection(req.remote_addr, req.remote_port, port);
  if (shape.stream) return stream(res, std::move(r), shape, fd);

  // Not streamed: wait for the whole answer, watching the connection meanwhile.
  std::string text;
  std::vector<TokenLogprobs> logprobs;
  GenEvent e;
  for (;;) {
    if (!r->next(e, std::chrono::milliseconds(100))) {
      if (peer_gone(fd)) {
        r->cancel();
        res.status = 499;  // the client closed the connection (nothing is sent)
        return;
      }
      continue;
    }
    if (e.kind == GenEvent::Kind::Error) return send_error(res, e.status, e.error, "server_error");
    text += e.text;
    logprobs.insert(logprobs.end(), e.logprobs.begin(), e.logprobs.end());
    if (e.kind == GenEvent::Kind::Done) break;
  }
  t_log.completion_tokens = e.usage.completion_tokens;
  send_json(res, make_response(shape, text, logprobs, e));
}

void Server::Impl::stream(httplib::Response& res, std::shared_ptr<Request> r,
                          const ResponseShape& shape, int fd) {
  struct State {
    std::shared_ptr<Request> req;
    ResponseShape shape;
    int fd;
    bool started = false;
    int64_t offset = 0;  // bytes of text sent (completions' text_offset)
  };
  auto st = std::make_shared<State>(State{std::move(r), shape, fd});
  st->offset = int64_t(shape.echo.size());
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [st](size_t, httplib::DataSink& sink) {
        auto send = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
        if (!st->started) {
          st->started = true;
          if (!send(sse_event(make_role_chunk(st->shape)))) return false;
        }
        GenEvent e;
        if (!st->req->next(e, std::chrono::milliseconds(100)))
          return !peer_gone(st->fd);  // false ends the response: the releaser cancels
        if (e.kind == GenEvent::Kind::Error) {
          send(sse_event(error_json(e.status, e.error, "server_error")));
          send(sse_done());
          sink.done();
          return true;
        }
        if (!e.text.empty() || !e.logprobs.empty()) {
          if (!send(sse_event(make_text_chunk(st->shape, e.text, e.logprobs, st->offset))))
            return false;
          st->offset += int64_t(e.text.size());
        }
        if (e.kind == GenEvent::Kind::Done) {
          t_log.completion_tokens = e.usage.completion_tokens;
          if (!send(sse_event(make_finish_chunk(st->shape, e)))) return false;
          if (st->shape.include_usage && !send(sse_event(make_usage_chunk(st->shape, e))))
            return false;
          send(sse_done());
          sink.done();
        }
        return true;
      },
      [st](bool success) {
        if (!success) st->req->cancel();
      });
}

std::string Server::Impl::metrics_text() {
  const EngineStats s = engine->stats();
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, double v) {
    char line[512];
    std::snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n%s %.6g\n", name, help, name,
                  type, name, v);
    out += line;
  };
  out +=
      "# HELP straw_requests_total HTTP requests answered, by path and status\n"
      "# TYPE straw_requests_total counter\n";
  {
    std::lock_guard lock(metrics_mu);
    for (const auto& [k, n] : requests)
      out += "straw_requests_total{path=\"" + k.first + "\",status=\"" + std::to_string(k.second) +
             "\"} " + std::to_string(n) + "\n";
  }
  metric("straw_prompt_tokens_total", "counter", "prompt tokens evaluated",
         double(s.prompt_tokens));
  metric("straw_prompt_tokens_cached_total", "counter", "prompt tokens reused from slot caches",
         double(s.prompt_tokens_cached));
  metric("straw_completion_tokens_total", "counter", "tokens generated",
         double(s.completion_tokens));
  metric("straw_generations_total", "counter", "generations finished", double(s.requests_done));
  metric("straw_generations_cancelled_total", "counter", "generations cancelled by the client",
         double(s.requests_cancelled));
  metric("straw_forward_steps_total", "counter", "batched forward steps", double(s.steps));
  metric("straw_busy_seconds_total", "counter", "seconds spent in forward steps", s.busy_seconds);
  metric("straw_queue_length", "gauge", "requests waiting for a slot", s.queue_length);
  metric("straw_slots_busy", "gauge", "slots generating", s.busy_slots);
  metric("straw_slots_total", "gauge", "slots (--parallel)", s.slots);
  metric("straw_tokens_per_second", "gauge", "tokens generated per second over the last 10 s",
         s.recent_tokens_per_second);
  if (o.engine.speculative.method != SpecMethod::None) {
    metric("straw_speculative_steps_total", "counter",
           "slot evaluations that verified speculative proposals", double(s.spec_steps));
    metric("straw_speculative_proposed_total", "counter", "tokens proposed",
           double(s.spec_proposed));
    metric("straw_speculative_accepted_total", "counter", "proposed tokens accepted",
           double(s.spec_accepted));
  }
  return out;
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->o = std::move(options);
  // SO_REUSEADDR alone: a restarted server binds its port while connections of the previous one
  // are in TIME_WAIT, and a second server on a port that is listening fails with "in use".
  // (cpp-httplib's default on Linux is SO_REUSEPORT, which lets two servers share one port.)
  impl_->http.set_socket_options([](auto sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  impl_->routes();
}

Server::~Server() {
  stop(std::chrono::milliseconds(0));
  if (impl_->loader.joinable()) impl_->loader.join();
}

int Server::bind() {
  Impl& s = *impl_;
  s.port = s.o.port == 0 ? s.http.bind_to_any_port(s.o.host) : s.o.port;
  if (s.port <= 0 || (s.o.port != 0 && !s.http.bind_to_port(s.o.host, s.o.port)))
    throw Error("cannot listen on " + s.o.host + ":" + std::to_string(s.o.port) +
                " (in use, or not an address of this machine): choose another --host/--port");
  return s.port;
}

int Server::serve() {
  Impl& s = *impl_;
  s.loader = std::thread([&s] { s.load(); });
  if (!s.stopping.load()) s.http.listen_after_bind();
  // A stop during loading takes effect once the model is loaded (loading cannot be interrupted).
  s.loader.join();
  return s.load_error.empty() ? 0 : 1;
}

void Server::stop(std::chrono::milliseconds grace) {
  Impl& s = *impl_;
  if (s.stopping.exchange(true)) return;
  // Running generations finish (or are cancelled after `grace`) before the HTTP server stops, so
  // their responses end properly; new requests meanwhile get 503.
  {
    std::lock_guard lock(s.engine_mu);
    if (s.engine) s.engine->shutdown(grace);
  }
  s.http.stop();
}

bool Server::ready() const {
  return impl_->ready.load();
}

}  // namespace straw::serve
