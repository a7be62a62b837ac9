#include "openai.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <random>

#include "http_error.h"

namespace straw::serve {

namespace {

// ---- field access with errors that name the field ------------------------------------------

const json* field(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

double number(const json& body, const char* key, double lo, double hi) {
  const json& v = *field(body, key);
  if (!v.is_number()) reject(400, "'", key, "' must be a number");
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    reject(400, "'", key, "' must be between ", lo, " and ", hi, ", got ", v.dump());
  return x;
}

int64_t integer(const json& body, const char* key, int64_t lo, int64_t hi) {
  const json& v = *field(body, key);
  if (!v.is_number_integer()) reject(400, "'", key, "' must be an integer");
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
    reject(400, "'", key, "' is out of range: ", v.dump());
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) reject(400, "'", key, "' must be between ", lo, " and ", hi, ", got ", x);
  return x;
}

bool boolean(const json& body, const char* key) {
  const json* v = field(body, key);
  if (!v) return false;
  if (!v->is_boolean()) reject(400, "'", key, "' must be true or false");
  return v->get<bool>();
}

std::string string_field(const json& v, const std::string& what) {
  if (!v.is_string()) reject(400, "'", what, "' must be a string");
  return v.get<std::string>();
}

// ---- shared sampling / length / stop fields -------------------------------------------------

void parse_common(const json& body, const ModelContext& m, ParsedRequest& r) {
  if (!body.is_object()) reject(400, "the request body must be a JSON object");
  GenRequest& g = r.gen;
  SamplingOptions& s = g.sampling;
  if (field(body, "temperature")) s.temperature = float(number(body, "temperature", 0, 100));
  if (field(body, "top_p")) s.top_p = float(number(body, "top_p", 0, 1));
  if (field(body, "top_k")) s.top_k = int32_t(integer(body, "top_k", 0, 1 << 30));
  if (field(body, "min_p")) s.min_p = float(number(body, "min_p", 0, 1));
  if (field(body, "presence_penalty"))
    s.presence_penalty = float(number(body, "presence_penalty", -2, 2));
  if (field(body, "frequency_penalty"))
    s.frequency_penalty = float(number(body, "frequency_penalty", -2, 2));
  if (field(body, "repeat_penalty"))
    s.repeat_penalty = float(number(body, "repeat_penalty", 0.01, 100));
  if (field(body, "repeat_last_n"))
    s.penalty_last_n = int32_t(integer(body, "repeat_last_n", -1, 1 << 30));
  if (field(body, "seed")) s.seed = uint64_t(integer(body, "seed", INT64_MIN, INT64_MAX));

  // max_completion_tokens (current) wins over max_tokens (deprecated) and llama-server's
  // n_predict; larger than the context simply ends with finish_reason "length".
  for (const char* key : {"n_predict", "max_tokens", "max_completion_tokens"})
    if (field(body, key)) {
      const json& v = *field(body, key);
      if (std::string_view(key) == "n_predict" && v == -1) continue;  // llama-server: no limit
      if (!v.is_number_integer() ||
          (v.is_number_unsigned() ? v.get<uint64_t>() == 0 : v.get<int64_t>() < 1))
        reject(400, "'", key, "' must be a positive integer, got ", v.dump());
      g.max_tokens = v.is_number_unsigned()
                         ? int64_t(std::min<uint64_t>(v.get<uint64_t>(), uint64_t(INT64_MAX)))
                         : v.get<int64_t>();
    }

  if (const json* stop = field(body, "stop")) {
    if (stop->is_string()) {
      g.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      if (stop->size() > 16) reject(400, "'stop' may hold at most 16 strings");
      for (const json& s : *stop) g.stop.push_back(string_field(s, "stop"));
    } else {
      reject(400, "'stop' must be a string or an array of strings");
    }
  }
  if (const json* lb = field(body, "logit_bias")) {
    // {"token id": bias in -100..100}; -100 bans the token, as OpenAI documents.
    if (!lb->is_object()) reject(400, "'logit_bias' must be an object of token id -> bias");
    for (const auto& [key, v] : lb->items()) {
      char* end = nullptr;
      const long id = std::strtol(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || id < 0 || id >= m.model->n_vocab())
        reject(400, "logit_bias: '", key, "' is not a token id of this model (0..",
               m.model->n_vocab() - 1, ")");
      if (!v.is_number() || !std::isfinite(v.get<double>()) || std::fabs(v.get<double>()) > 100)
        reject(400, "logit_bias['", key, "'] must be a number between -100 and 100");
      const float bias = v.get<double>() <= -100 ? -std::numeric_limits<float>::infinity()
                                                 : float(v.get<double>());
      s.logit_bias.push_back({int32_t(id), bias});
    }
  }
  g.ignore_eos = boolean(body, "ignore_eos");
  if (field(body, "n") && integer(body, "n", 1, 1 << 20) != 1)
    reject(400, "'n' > 1 is not supported: send the request several times");

  r.shape.stream = boolean(body, "stream");
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) reject(400, "'stream_options' must be an object");
    r.shape.include_usage = boolean(*so, "include_usage");
  }
  if (const json* rf = field(body, "response_format")) {
    if (!rf->is_object() || !rf->contains("type") || !(*rf)["type"].is_string())
      reject(400, "'response_format' must be an object with a string 'type'");
    const std::string type = (*rf)["type"];
    if (type == "json_object" || type == "json_schema") {
      if (!m.constraint) reject(400, "response_format '", type, "' is not available");
      g.constraint = m.constraint(*rf);
    } else if (type != "text") {
      reject(400, "response_format type '", type,
             "' is not supported (text, json_object, json_schema)");
    }
  }
  r.shape.model = m.name;
  r.shape.created = int64_t(std::time(nullptr));
}

std::vector<int32_t> tokenize_prompt(const Model& model, const std::string& text) {
  std::vector<int32_t> t = model.tokenize(text, true, true);
  // A template that writes the BOS text itself, tokenized with BOS added: keep one.
  if (t.size() >= 2 && t[0] == t[1] && model.tokenize("", true, false) == std::vector{t[0]})
    t.erase(t.begin());
  return t;
}

void check_length(const ParsedRequest& r, const ModelContext& m) {
  if (int64_t(r.gen.prompt.size()) >= m.n_ctx)
    reject(400, "the prompt is ", r.gen.prompt.size(), " tokens long but the context is ", m.n_ctx,
           " tokens (at least one must be left to generate): shorten the prompt or start the "
           "server with a larger --ctx");
}

std::string message_content(const json& msg, size_t i) {
  const json* c = field(msg, "content");
  if (!c) return {};
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array())
    reject(400, "messages[", i, "].content must be a string or an array of text parts");
  std::string text;
  for (const json& part : *c) {
    if (!part.is_object() || !part.contains("type") || part["type"] != "text")
      reject(400, "messages[", i, "].content: only parts of type 'text' are supported");
    text += string_field(part.value("text", json()), "text");
  }
  return text;
}

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

json chat_logprobs(const std::vector<TokenLogprobs>& lps) {
  json content = json::array();
  for (const TokenLogprobs& t : lps) {
    json top = json::array();
    for (const TokenProb& p : t.top)
      top.push_back({{"token", p.piece}, {"logprob", p.logprob}, {"bytes", bytes_of(p.piece)}});
    content.push_back({{"token", t.chosen.piece},
                       {"logprob", t.chosen.logprob},
                       {"bytes", bytes_of(t.chosen.piece)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}};
}

json completion_logprobs(const std::vector<TokenLogprobs>& lps, int64_t offset) {
  json tokens = json::array(), lp = json::array(), top = json::array(), offs = json::array();
  for (const TokenLogprobs& t : lps) {
    tokens.push_back(t.chosen.piece);
    lp.push_back(t.chosen.logprob);
    json alt = json::object();
    for (const TokenProb& p : t.top) alt[p.piece] = p.logprob;
    top.push_back(alt);
    offs.push_back(offset);
    offset += int64_t(t.chosen.piece.size());
  }
  return {{"tokens", tokens}, {"token_logprobs", lp}, {"top_logprobs", top}, {"text_offset", offs}};
}

json base(const ResponseShape& s, bool chunk) {
  const char* object = s.endpoint == Endpoint::Chat
                           ? (chunk ? "chat.completion.chunk" : "chat.completion")
                           : "text_completion";
  return {{"id", s.id},
          {"object", object},
          {"created", s.created},
          {"model", s.model},
          {"system_fingerprint", "straw"}};
}

json timings_json(const GenEvent& done) {
  const Timings& t = done.timings;
  const double n = double(done.usage.completion_tokens);
  const double evaluated = double(done.usage.prompt_tokens - done.usage.cached_tokens);
  json j = {
      {"queue_ms", t.queue_ms},
      {"prompt_n", evaluated},
      {"prompt_ms", t.prompt_ms},
      {"prompt_per_second", t.prompt_ms > 0 ? evaluated * 1000.0 / t.prompt_ms : 0.0},
      {"predicted_n", n},
      {"predicted_ms", t.predict_ms},
      {"predicted_per_second", t.predict_ms > 0 && n > 1 ? (n - 1) * 1000.0 / t.predict_ms : 0.0}};
  // Speculative decoding (as llama-server reports it).
  if (t.draft_n > 0) {
    j["draft_n"] = t.draft_n;
    j["draft_n_accepted"] = t.draft_n_accepted;
  }
  return j;
}

}  // namespace

ParsedRequest parse_chat_request(const json& body, const ModelContext& m) {
  ParsedRequest r;
  r.shape.endpoint = Endpoint::Chat;
  r.shape.id = make_id("chatcmpl-");
  parse_common(body, m, r);
  const json* msgs = field(body, "messages");
  if (!msgs || !msgs->is_array() || msgs->empty())
    reject(400, "'messages' must be a non-empty array of messages");
  std::vector<ChatMessage> chat;
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& msg = (*msgs)[i];
    if (!msg.is_object() || !msg.contains("role"))
      reject(400, "messages[", i, "] must be an object with a 'role'");
    std::string role = string_field(msg["role"], "role");
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant")
      reject(400, "messages[", i, "].role '", role,
             "' is not supported (system, developer, user, assistant)");
    chat.push_back({role, message_content(msg, i)});
  }
  std::string text;
  if (m.model->has_chat_template()) {
    text = m.model->apply_chat_template(chat, true);
  } else {
    // No template: the contents as one plain completion prompt, one message per line.
    for (const ChatMessage& c : chat) text += (text.empty() ? "" : "\n") + c.content;
  }
  r.gen.prompt = tokenize_prompt(*m.model, text);
  if (r.gen.prompt.empty()) reject(400, "the messages are empty");
  check_length(r, m);
  r.shape.logprobs = boolean(body, "logprobs");
  if (r.shape.logprobs)
    r.gen.top_logprobs =
        field(body, "top_logprobs") ? int(integer(body, "top_logprobs", 0, 20)) : 0;
  return r;
}

ParsedRequest parse_completion_request(const json& body, const ModelContext& m) {
  ParsedRequest r;
  r.shape.endpoint = Endpoint::Completion;
  r.shape.id = make_id("cmpl-");
  parse_common(body, m, r);
  const json* p = field(body, "prompt");
  if (!p) reject(400, "'prompt' is required");
  // One prompt: a string, token ids, or an array holding one of those.
  const json* one = p;
  if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array()))
    one = &(*p)[0];
  if (one->is_string()) {
    const std::string text = one->get<std::string>();
    r.gen.prompt = tokenize_prompt(*m.model, text);
    if (boolean(body, "echo")) r.shape.echo = text;
  } else if (one->is_array() && !one->empty() && (*one)[0].is_number()) {
    for (size_t i = 0; i < one->size(); ++i) {
      const json& t = (*one)[i];
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= m.model->n_vocab())
        reject(400, "prompt[", i, "] is not a token id of this model (0..", m.model->n_vocab() - 1,
               ")");
      r.gen.prompt.push_back(int32_t(t.get<int64_t>()));
    }
    if (boolean(body, "echo")) r.shape.echo = m.model->detokenize(r.gen.prompt);
  } else {
    reject(400, "'prompt' must be a string, an array of token ids, or an array with one of those");
  }
  if (const json* suffix = field(body, "suffix");
      suffix && !string_field(*suffix, "suffix").empty())
    reject(400, "'suffix' is not supported");
  if (r.gen.prompt.empty()) reject(400, "the prompt is empty");
  check_length(r, m);
  if (field(body, "logprobs")) {
    r.shape.logprobs = true;
    r.gen.top_logprobs = int(integer(body, "logprobs", 0, 20));
  }
  return r;
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json make_response(const ResponseShape& s, const std::string& text,
                   const std::vector<TokenLogprobs>& logprobs, const GenEvent& done) {
  json r = base(s, false);
  json choice = {{"index", 0}, {"finish_reason", done.finish_reason}};
  if (s.endpoint == Endpoint::Chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
    choice["logprobs"] = s.logprobs ? chat_logprobs(logprobs) : json();
  } else {
    choice["text"] = s.echo + text;
    choice["logprobs"] =
        s.logprobs ? completion_logprobs(logprobs, int64_t(s.echo.size())) : json();
  }
  r["choices"] = json::array({choice});
  r["usage"] = usage_json(done.usage);
  r["timings"] = timings_json(done);
  return r;
}

json make_role_chunk(const ResponseShape& s) {
  json r = base(s, true);
  if (s.endpoint == Endpoint::Chat) {
    r["choices"] = json::array({{{"index", 0},
                                 {"delta", {{"role", "assistant"}, {"content", ""}}},
                                 {"logprobs", nullptr},
                                 {"finish_reason", nullptr}}});
  } else {
    r["choices"] = json::array(
        {{{"index", 0}, {"text", s.echo}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
  }
  return r;
}

json make_text_chunk(const ResponseShape& s, const std::string& text,
                     const std::vector<TokenLogprobs>& logprobs, int64_t text_offset) {
  json r = base(s, true);
  json choice = {{"index", 0}, {"finish_reason", nullptr}};
  if (s.endpoint == Endpoint::Chat) {
    choice["delta"] = {{"content", text}};
    choice["logprobs"] = s.logprobs ? chat_logprobs(logprobs) : json();
  } else {
    choice["text"] = text;
    choice["logprobs"] = s.logprobs ? completion_logprobs(logprobs, text_offset) : json();
  }
  r["choices"] = json::array({choice});
  return r;
}

json make_finish_chunk(const ResponseShape& s, const GenEvent& done) {
  json r = base(s, true);
  json choice = {{"index", 0}, {"finish_reason", done.finish_reason}, {"logprobs", nullptr}};
  if (s.endpoint == Endpoint::Chat)
    choice["delta"] = json::object();
  else
    choice["text"] = "";
  r["choices"] = json::array({choice});
  r["timings"] = timings_json(done);
  return r;
}

json make_usage_chunk(const ResponseShape& s, const GenEvent& done) {
  json r = base(s, true);
  r["choices"] = json::array();
  r["usage"] = usage_json(done.usage);
  return r;
}

json error_json(int status, const std::string& message, const std::string& type) {
  return {{"error", {{"message", message}, {"type", type}, {"code", status}}}};
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse_event(const json& j) {
  return "data: " + dump(j) + "\n\n";
}

std::string make_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += hex[rng() & 15];
  return id;
}

}  // namespace straw::serve
