// straw serve: an OpenAI-compatible HTTP server over the public API.
//
//   Server server(options);            // nothing happens yet
//   int port = server.bind();          // listening socket (port 0: a free one)
//   server.serve();                    // loads the model (GET /health answers 503 meanwhile), then
//                                      // answers requests until stop(); returns an exit code
//   server.stop(grace)                 // from any thread: no new requests, running ones get
//                                      // `grace` to finish, then serve() returns
//
// Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health,
// GET /metrics (Prometheus), POST /tokenize, POST /detokenize, GET / (a chat page). Errors use
// OpenAI's shape {"error": {"message", "type", "code"}}.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "engine.h"

namespace straw::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;        // non-empty: every endpoint but / and /health needs
                              // "Authorization: Bearer KEY"
  std::string alias;          // the model's name in responses; empty: the model's own
  size_t max_body = 8 << 20;  // request bodies above this get 413
  int read_timeout_s = 15;    // a body that does not arrive in time closes the connection
  int http_threads = 64;      // connections served at once (streams hold one each)
  EngineOptions engine;
  std::function<std::unique_ptr<Model>()> load;  // loads the model (on a background thread)
  // Loads the draft model of speculative decoding (engine.speculative.method Draft), before the
  // model; null: none.
  std::function<std::unique_ptr<Model>()> load_draft;
  std::function<void(const std::string&)> log;  // one line per request; null: stderr
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();

  int bind();   // returns the port; throws straw::Error when the address cannot be bound
  int serve();  // 0 after stop(); 1 when the model failed to load (the message is logged)
  void stop(std::chrono::milliseconds grace);
  bool ready() const;  // the model is loaded

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace straw::serve
