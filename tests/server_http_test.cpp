// straw serve over real sockets: the bad-input list (malformed JSON, wrong types, invalid UTF-8,
// empty messages, prompts longer than the context, bodies over --max-body, API keys, unknown paths,
// slow and truncated bodies) answered with OpenAI-shaped errors; afterwards /health still answers
// and the process's memory is where it was.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "server.h"
#include "test_util.h"

namespace {

using namespace straw;
using nlohmann::json;
using namespace std::chrono_literals;

int connect_to(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{20, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// Sends raw bytes and reads one response: up to its Content-Length, or the end of a chunked body,
// or until the server closes the connection.
std::string roundtrip(int port, const std::string& raw) {
  const int fd = connect_to(port);
  if (fd < 0) return "connect failed";
  size_t sent = 0;
  while (sent < raw.size()) {
    const ssize_t n = send(fd, raw.data() + sent, raw.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += size_t(n);
  }
  std::string out;
  char buf[4096];
  auto complete = [&] {
    const size_t head = out.find("\r\n\r\n");
    if (head == std::string::npos) return false;
    const std::string h = out.substr(0, head);
    if (h.find("Transfer-Encoding: chunked") != std::string::npos)
      return out.size() >= 5 && out.compare(out.size() - 5, 5, "0\r\n\r\n") == 0;
    const size_t cl = h.find("Content-Length: ");
    return cl != std::string::npos &&
           out.size() - head - 4 >= size_t(std::atol(h.c_str() + cl + 16));
  };
  for (ssize_t n; !complete() && (n = recv(fd, buf, sizeof(buf), 0)) > 0;)
    out.append(buf, size_t(n));
  close(fd);
  return out;
}

std::string request(const std::string& method, const std::string& path, const std::string& body,
                    const std::string& extra_headers = "") {
  return method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra_headers +
         "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0) return -1;
  return std::atoi(response.c_str() + 9);
}

json body_of(const std::string& response) {
  const size_t at = response.find("\r\n\r\n");
  if (at == std::string::npos) return json();
  return json::parse(response.substr(at + 4), nullptr, false);
}

long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return 0;
}

class ServerHttp : public ::testing::Test {
 public:
  // The fixture's server: stories260K on the CPU, two slots, an API key, small limits.
  static serve::ServerOptions options(int port) {
    serve::ServerOptions o;
    o.host = "127.0.0.1";
    o.port = port;
    o.api_key = "sekret";
    o.max_body = 4096;
    o.read_timeout_s = 1;
    o.engine.parallel = 2;
    o.engine.ctx = 128;
    o.log = [](const std::string&) {};
    o.load = [] {
      ModelOptions m;
      m.path = STRAW_SOURCE_DIR "/models/stories260K.gguf";
      m.threads = 1;
      m.ctx = 128;
      m.device = DeviceChoice::Cpu;
      return Model::load(m);
    };
    return o;
  }
  // Binds and serves on a thread; returns once the model is loaded.
  void start(serve::ServerOptions o) {
    server_ = std::make_unique<serve::Server>(std::move(o));
    port_ = server_->bind();
    thread_ = std::thread([this] { rc_ = server_->serve(); });
    for (int i = 0; i < 500 && !server_->ready(); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(server_->ready());
  }
  void SetUp() override { start(options(0)); }
  void TearDown() override {
    server_->stop(1000ms);
    thread_.join();
    EXPECT_EQ(rc_, 0);
  }
  std::string post(const std::string& path, const std::string& body, bool auth = true) {
    return roundtrip(port_,
                     request("POST", path, body, auth ? "Authorization: Bearer sekret\r\n" : ""));
  }
  // Asserts an OpenAI-shaped error with the given status.
  void expect_error(const std::string& response, int status, const std::string& what) {
    EXPECT_EQ(status_of(response), status) << what << "\n" << response;
    const json b = body_of(response);
    ASSERT_TRUE(b.is_object()) << what << "\n" << response;
    ASSERT_TRUE(b.contains("error")) << what;
    EXPECT_EQ(b["error"]["code"], status) << what;
    EXPECT_TRUE(b["error"]["message"].is_string()) << what;
    EXPECT_TRUE(b["error"]["type"].is_string()) << what;
  }

  std::unique_ptr<serve::Server> server_;
  int port_ = 0;
  int rc_ = -1;
  std::thread thread_;
};

const char* kChat = "/v1/chat/completions";

void bad_inputs(ServerHttp& t, int port) {
  const std::string msgs = R"("messages":[{"role":"user","content":"Once upon a time"}])";
  t.expect_error(t.post(kChat, "{not json"), 400, "malformed JSON");
  t.expect_error(t.post(kChat, "[1,2,3]"), 400, "not an object");
  t.expect_error(t.post(kChat, ""), 400, "empty body");
  t.expect_error(t.post(kChat, R"({"messages":"hello"})"), 400, "wrong type: messages");
  t.expect_error(t.post(kChat, "{" + msgs + R"(,"temperature":"hot"})"), 400, "wrong type");
  t.expect_error(t.post(kChat, "{" + msgs + R"(,"top_p":3})"), 400, "out of range");
  t.expect_error(t.post(kChat, "{" + msgs + R"(,"max_tokens":-1})"), 400, "negative max_tokens");
  t.expect_error(t.post(kChat, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}"),
                 400, "invalid UTF-8");
  t.expect_error(t.post(kChat, R"({"messages":[]})"), 400, "empty messages");
  // An empty message is still a prompt (the BOS token).
  EXPECT_EQ(
      status_of(t.post(kChat, R"({"messages":[{"role":"user","content":""}],"max_tokens":2})")),
      200);
  const std::string long_prompt(2000, 'a');
  const std::string too_long = R"({"prompt":")" + std::string(1000, 'a') + "\"}";
  const std::string r = t.post("/v1/completions", too_long);
  t.expect_error(r, 400, "prompt longer than the context");
  EXPECT_NE(body_of(r)["error"]["message"].get<std::string>().find("context is 128"),
            std::string::npos);
  t.expect_error(
      t.post(kChat, "{" + msgs + ",\"pad\":\"" + long_prompt + long_prompt + long_prompt + "\"}"),
      413, "body over --max-body");
  t.expect_error(t.post(kChat, "{" + msgs + "}", false), 401, "missing API key");
  t.expect_error(
      roundtrip(port, request("POST", kChat, "{" + msgs + "}", "Authorization: Bearer wrong\r\n")),
      401, "wrong API key");
  t.expect_error(
      roundtrip(port, request("GET", "/v1/nothing", "", "Authorization: Bearer sekret\r\n")), 404,
      "unknown path");
  // Unknown fields are ignored; a huge max_tokens ends at the context.
  const std::string ok = t.post(
      kChat, "{" + msgs + R"(,"max_tokens":1000000000,"whatever":{"x":[1]},"temperature":0})");
  EXPECT_EQ(status_of(ok), 200) << ok;
  EXPECT_EQ(body_of(ok)["choices"][0]["finish_reason"], "length");
  // A body that never arrives in full: the read times out and the connection closes.
  const std::string slow =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
      "sekret\r\nConnection: close\r\nContent-Length: 500\r\n\r\n{\"prompt\":";
  const auto t0 = std::chrono::steady_clock::now();
  const std::string answer = roundtrip(port, slow);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  EXPECT_NE(status_of(answer), 200) << answer;
  // A body cut off by the client closing its side.
  {
    const int fd = connect_to(port);
    const std::string cut =
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro";
    send(fd, cut.data(), cut.size(), MSG_NOSIGNAL);
    close(fd);
  }
  // Garbage instead of HTTP.
  EXPECT_NE(status_of(roundtrip(port, "\x01\x02 nonsense\r\n\r\n")), 200);
}

TEST_F(ServerHttp, BadInputGetsErrorsAndTheServerStaysHealthyWithoutLeaking) {
  // Warm up (first requests allocate buffers that stay), then measure.
  bad_inputs(*this, port_);
  bad_inputs(*this, port_);
  const long before = rss_kib();
  for (int i = 0; i < 5; ++i) bad_inputs(*this, port_);
  const long after = rss_kib();
  const std::string health = roundtrip(port_, request("GET", "/health", ""));
  EXPECT_EQ(status_of(health), 200);
  EXPECT_EQ(body_of(health), json({{"status", "ok"}}));
  // Memory: no growth beyond allocator noise after 5 more rounds (sanitizer builds keep freed
  // memory in quarantine, so the bound is loose).
  EXPECT_LT(after - before, 16 * 1024) << "RSS grew from " << before << " to " << after << " KiB";
}

// A second server on a port that is listening is refused; a server started on the port right
// after the first stopped (its connections in TIME_WAIT) binds it.
TEST_F(ServerHttp, APortInUseIsRefusedAndAStoppedServersPortIsReused) {
  {
    serve::Server second(options(port_));
    EXPECT_THROW(second.bind(), Error);
  }
  EXPECT_EQ(status_of(roundtrip(port_, request("GET", "/health", ""))), 200);
  // Stop the fixture's server after a few connections, then start another on its port.
  const int port = port_;
  server_->stop(1000ms);
  thread_.join();
  EXPECT_EQ(rc_, 0);
  start(options(port));
  EXPECT_EQ(port_, port);
  EXPECT_EQ(status_of(roundtrip(port, request("GET", "/health", ""))), 200);
}

TEST_F(ServerHttp, StreamsServerSentEventsAndEndsWithDone) {
  const std::string r = post(
      "/v1/completions",
      R"({"prompt":"Once upon a time","max_tokens":12,"temperature":0,"stream":true,"stream_options":{"include_usage":true}})");
  EXPECT_EQ(status_of(r), 200);
  EXPECT_NE(r.find("Content-Type: text/event-stream"), std::string::npos);
  const std::string done = "data: [DONE]\n\n";
  ASSERT_GE(r.size(), done.size());
  EXPECT_EQ(r.substr(r.size() - done.size() - 7).find(done), 0u) << r;  // before the 0-chunk
  std::string text;
  int events = 0;
  bool usage = false;
  for (size_t at = 0; (at = r.find("data: {", at)) != std::string::npos; at += 6) {
    const size_t end = r.find("\n\n", at);
    const json j = json::parse(r.substr(at + 6, end - at - 6));
    ++events;
    if (j.contains("usage")) {
      usage = true;
      EXPECT_EQ(j["usage"]["completion_tokens"], 12);
      EXPECT_TRUE(j["choices"].empty());
    } else {
      text += j["choices"][0]["text"].get<std::string>();
    }
  }
  EXPECT_GT(events, 3);
  EXPECT_TRUE(usage);
  const std::string plain =
      post("/v1/completions", R"({"prompt":"Once upon a time","max_tokens":12,"temperature":0})");
  EXPECT_EQ(body_of(plain)["choices"][0]["text"], text);
}

TEST_F(ServerHttp, ModelsTokenizeDetokenizeMetricsAndThePage) {
  const auto get = [&](const std::string& path) {
    return roundtrip(port_, request("GET", path, "", "Authorization: Bearer sekret\r\n"));
  };
  const json models = body_of(get("/v1/models"));
  EXPECT_EQ(models["object"], "list");
  EXPECT_EQ(models["data"][0]["object"], "model");
  const json tok = body_of(post("/tokenize", R"({"content":"Once upon a time"})"));
  ASSERT_TRUE(tok["tokens"].is_array());
  const json detok = body_of(post("/detokenize", json{{"tokens", tok["tokens"]}}.dump()));
  EXPECT_EQ(detok["content"], "Once upon a time");
  expect_error(post("/detokenize", R"({"tokens":[1,-4]})"), 400, "bad token id");
  // A request is counted by cpp-httplib's logger, which runs after its response is written: the
  // count can lag the response it follows by a moment, so wait for it.
  std::string metrics;
  for (int i = 0; i < 100; ++i) {
    metrics = get("/metrics");
    if (metrics.find("path=\"/v1/models\",status=\"200\"} 1") != std::string::npos) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(status_of(metrics), 200);
  EXPECT_NE(metrics.find("straw_requests_total{path=\"/v1/models\",status=\"200\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("straw_slots_total 2"), std::string::npos);
  // The page needs no key (it asks for one).
  const std::string page = roundtrip(port_, request("GET", "/", ""));
  EXPECT_EQ(status_of(page), 200);
  EXPECT_NE(page.find("<title>straw</title>"), std::string::npos);
}

}  // namespace
