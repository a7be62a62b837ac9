// The OpenAI API's shapes: requests of /v1/chat/completions and /v1/completions parsed into
// GenRequests, and the JSON of responses, stream chunks and errors.
//
// Parsing is strict about what it uses and lenient about the rest: unknown fields are ignored; a
// known field of the wrong type or out of range is an HttpError(400) naming the field.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine.h"
#include "straw/straw.h"

namespace straw::serve {

using nlohmann::json;

// Builds the constraint of a request's response_format (json_object / json_schema); null for text.
using ConstraintFactory =
    std::function<std::unique_ptr<TokenConstraint>(const json& response_format)>;

enum class Endpoint { Chat, Completion };

// What a response needs besides the generated text.
struct ResponseShape {
  Endpoint endpoint = Endpoint::Chat;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the usage
  bool logprobs = false;       // chat: logprobs; completions: logprobs = N
  std::string echo;            // completions with echo: the prompt text, output first
  std::string id;              // "chatcmpl-..." / "cmpl-..."
  std::string model;           // the served model's name (--alias)
  int64_t created = 0;         // unix seconds
};

struct ParsedRequest {
  GenRequest gen;
  ResponseShape shape;
};

// The bits of the served model that parsing needs.
struct ModelContext {
  const Model* model = nullptr;
  std::string name;   // reported as "model"
  int64_t n_ctx = 0;  // context of one slot
  ConstraintFactory constraint;
};

ParsedRequest parse_chat_request(const json& body, const ModelContext& m);
ParsedRequest parse_completion_request(const json& body, const ModelContext& m);

// Non-streamed response: all text and logprobs, and the Done event.
json make_response(const ResponseShape& s, const std::string& text,
                   const std::vector<TokenLogprobs>& logprobs, const GenEvent& done);

// Stream chunks. first: the chat role chunk; then one per text event; the last carries
// finish_reason; with include_usage a final chunk with empty choices and the usage.
json make_role_chunk(const ResponseShape& s);
json make_text_chunk(const ResponseShape& s, const std::string& text,
                     const std::vector<TokenLogprobs>& logprobs, int64_t text_offset);
json make_finish_chunk(const ResponseShape& s, const GenEvent& done);
json make_usage_chunk(const ResponseShape& s, const GenEvent& done);

json usage_json(const Usage& u);
json error_json(int status, const std::string& message, const std::string& type);

// One Server-Sent Event: "data: <json>\n\n" (invalid UTF-8 in strings replaced by U+FFFD).
std::string sse_event(const json& j);
inline const char* sse_done() {
  return "data: [DONE]\n\n";
}

// JSON text with invalid UTF-8 replaced by U+FFFD (never throws on model output).
std::string dump(const json& j);

// A random id with a prefix: "chatcmpl-3f9a...".
std::string make_id(const char* prefix);

}  // namespace straw::serve
