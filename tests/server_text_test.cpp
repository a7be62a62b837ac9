// straw serve's text plumbing: whole UTF-8 characters only, stop strings, SSE events, request
// parsing (fields, ranges, errors).
#include <gtest/gtest.h>

#include "http_error.h"
#include "openai.h"
#include "test_util.h"
#include "text_stream.h"

namespace {

using namespace straw;
using namespace straw::serve;

std::string push_all(TextStream& s, const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) out += s.push(p);
  return out;
}

TEST(ServerText, OnlyWholeUtf8CharactersAreReleased) {
  TextStream s;
  // "é" = C3 A9, "€" = E2 82 AC, "😀" = F0 9F 98 80, split across pieces.
  EXPECT_EQ(s.push("a\xC3"), "a");
  EXPECT_EQ(s.push("\xA9\xE2\x82"), "\xC3\xA9");
  EXPECT_EQ(s.push("\xAC\xF0\x9F"), "\xE2\x82\xAC");
  EXPECT_EQ(s.push("\x98"), "");
  EXPECT_EQ(s.push("\x80!"), "\xF0\x9F\x98\x80!");
  EXPECT_EQ(s.finish(), "");
  // An incomplete character at the end becomes U+FFFD; invalid bytes pass (JSON replaces them).
  TextStream t;
  EXPECT_EQ(t.push("x\xE2\x82"), "x");
  EXPECT_EQ(t.finish(), "\xEF\xBF\xBD");
  TextStream u;
  EXPECT_EQ(u.push("\xFF"
                   "a"),
            "\xFF"
            "a");
}

TEST(ServerText, StopStringsCutTheTextAndHoldBackPossibleStarts) {
  TextStream s({"</end>", "STOP"});
  EXPECT_EQ(s.push("hello <"), "hello ");  // "<" may start "</end>"
  EXPECT_EQ(s.push("/e"), "");
  EXPECT_EQ(s.push("x"), "</ex");  // not a stop string after all
  EXPECT_FALSE(s.stopped());
  EXPECT_EQ(s.push(" more ST"), " more ");
  EXPECT_EQ(s.push("OP and after"), "");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.text(), "hello </ex more ");
  EXPECT_EQ(s.push("ignored"), "");

  // A stop string inside one piece; one spanning three pieces.
  TextStream a({"\n\n"});
  EXPECT_EQ(push_all(a, {"line one\n\nline two"}), "line one");
  EXPECT_TRUE(a.stopped());
  TextStream b({"abc"});
  EXPECT_EQ(push_all(b, {"xa", "b", "cz"}), "x");
  EXPECT_TRUE(b.stopped());
  // Held-back text is released at the end when no stop string completed.
  TextStream c({"abc"});
  EXPECT_EQ(c.push("xab"), "x");
  EXPECT_EQ(c.finish(), "ab");
}

TEST(ServerText, Utf8Validation) {
  EXPECT_TRUE(valid_utf8("plain \xC3\xA9 \xF0\x9F\x98\x80"));
  EXPECT_FALSE(valid_utf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(valid_utf8("\xE2\x82"));          // truncated
  EXPECT_EQ(complete_utf8_prefix("ab\xE2\x82"), 2u);
}

TEST(ServerText, SseEventsAndJsonNeverThrowOnInvalidUtf8) {
  EXPECT_EQ(sse_event(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(std::string(sse_done()), "data: [DONE]\n\n");
  EXPECT_EQ(dump(json{{"t", std::string("x\xFFy")}}), "{\"t\":\"x\xEF\xBF\xBDy\"}");
  const json e = error_json(404, "nope", "not_found_error");
  EXPECT_EQ(e["error"]["code"], 404);
  EXPECT_EQ(e["error"]["message"], "nope");
  EXPECT_EQ(e["error"]["type"], "not_found_error");
}

// Requests parsed against the bundled model.
class ServerParse : public ::testing::Test {
 protected:
  void SetUp() override {
    ModelOptions o;
    o.path = STRAW_SOURCE_DIR "/models/stories260K.gguf";
    o.threads = 1;
    o.device = DeviceChoice::Cpu;
    model_ = Model::load(o);
    ctx_.model = model_.get();
    ctx_.name = "stories";
    ctx_.n_ctx = 64;
  }
  int status_of(const json& body, bool chat = true) {
    try {
      chat ? parse_chat_request(body, ctx_) : parse_completion_request(body, ctx_);
    } catch (const HttpError& e) {
      return e.status();
    }
    return 200;
  }
  std::unique_ptr<Model> model_;
  ModelContext ctx_;
};

TEST_F(ServerParse, ChatFieldsMapToTheRequest) {
  const json body = {
      {"messages",
       {{{"role", "system"}, {"content", "Be brief."}},
        {{"role", "user"},
         {"content",
          {{{"type", "text"}, {"text", "Once upon"}}, {{"type", "text"}, {"text", " a time"}}}}}}},
      {"temperature", 0.5},
      {"top_p", 0.9},
      {"top_k", 20},
      {"min_p", 0.1},
      {"seed", 42},
      {"max_completion_tokens", 12},
      {"max_tokens", 99},
      {"stop", {"a", "b"}},
      {"presence_penalty", 0.5},
      {"frequency_penalty", -0.5},
      {"logprobs", true},
      {"top_logprobs", 3},
      {"stream", true},
      {"stream_options", {{"include_usage", true}}},
      {"unknown_field", {1, 2, 3}}};
  const ParsedRequest r = parse_chat_request(body, ctx_);
  EXPECT_EQ(r.gen.sampling.temperature, 0.5f);
  EXPECT_EQ(r.gen.sampling.top_p, 0.9f);
  EXPECT_EQ(r.gen.sampling.top_k, 20);
  EXPECT_EQ(r.gen.sampling.min_p, 0.1f);
  EXPECT_EQ(r.gen.sampling.seed, 42u);
  EXPECT_EQ(r.gen.sampling.presence_penalty, 0.5f);
  EXPECT_EQ(r.gen.sampling.frequency_penalty, -0.5f);
  EXPECT_EQ(r.gen.max_tokens, 12);  // max_completion_tokens wins
  EXPECT_EQ(r.gen.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.gen.top_logprobs, 3);
  EXPECT_TRUE(r.shape.stream);
  EXPECT_TRUE(r.shape.include_usage);
  EXPECT_TRUE(r.shape.logprobs);
  EXPECT_EQ(r.shape.model, "stories");
  // No chat template: the contents, one per line, as a plain prompt (with BOS).
  EXPECT_EQ(r.gen.prompt, model_->tokenize("Be brief.\nOnce upon a time"));
}

TEST_F(ServerParse, CompletionPromptsAsTextOrTokens) {
  ParsedRequest r =
      parse_completion_request({{"prompt", "Once upon a time"}, {"echo", true}}, ctx_);
  EXPECT_EQ(r.gen.prompt, model_->tokenize("Once upon a time"));
  EXPECT_EQ(r.shape.echo, "Once upon a time");
  r = parse_completion_request({{"prompt", {1, 2, 3}}, {"logprobs", 2}}, ctx_);
  EXPECT_EQ(r.gen.prompt, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(r.gen.top_logprobs, 2);
  r = parse_completion_request({{"prompt", {"Once"}}}, ctx_);
  EXPECT_EQ(r.gen.prompt, model_->tokenize("Once"));
  EXPECT_EQ(r.gen.max_tokens, -1);
}

TEST_F(ServerParse, BadFieldsAre400WithTheFieldNamed) {
  const json msgs = {{{"role", "user"}, {"content", "hi"}}};
  EXPECT_EQ(status_of({{"messages", json::array()}}), 400);
  EXPECT_EQ(status_of(json::object()), 400);
  EXPECT_EQ(status_of({{"messages", "hi"}}), 400);
  EXPECT_EQ(status_of({{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}), 400);
  EXPECT_EQ(status_of({{"messages", {{{"role", "user"}, {"content", 5}}}}}), 400);
  EXPECT_EQ(status_of({{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}}),
            400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"temperature", "hot"}}), 400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"temperature", -1}}), 400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"top_p", 1.5}}), 400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"top_k", 2.5}}), 400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"max_tokens", -3}}), 400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"max_tokens", 0}}), 400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"max_tokens", 1e30}}), 400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"max_tokens", uint64_t(1) << 63}}), 200);  // clamped
  EXPECT_EQ(status_of({{"messages", msgs}, {"stop", 3}}), 400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"n", 2}}), 400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"stream", "yes"}}), 400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"response_format", {{"type", "xml"}}}}), 400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"logprobs", true}, {"top_logprobs", 50}}), 400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"logit_bias", {{"7", 5}}}}), 200);
  EXPECT_EQ(status_of({{"messages", msgs}, {"logit_bias", {{"x", 5}}}}), 400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"logit_bias", {{"99999", 5}}}}), 400);
  EXPECT_EQ(status_of({{"messages", msgs}, {"logit_bias", {{"7", 500}}}}), 400);
  EXPECT_EQ(status_of({{"prompt", {1, 99999}}}, false), 400);
  EXPECT_EQ(status_of({{"prompt", 5}}, false), 400);
  EXPECT_EQ(status_of({{"prompt", ""}, {"suffix", "x"}}, false), 400);
  try {
    parse_chat_request({{"messages", msgs}, {"top_p", 7}}, ctx_);
    FAIL();
  } catch (const HttpError& e) {
    EXPECT_NE(std::string(e.what()).find("top_p"), std::string::npos) << e.what();
  }
}

TEST_F(ServerParse, APromptLongerThanTheContextSaysBothLengths) {
  const std::string long_text(400, 'a');
  try {
    parse_completion_request({{"prompt", long_text}}, ctx_);
    FAIL();
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status(), 400);
    const std::string m = e.what();
    EXPECT_NE(m.find("context is 64 tokens"), std::string::npos) << m;
    EXPECT_NE(m.find(std::to_string(model_->tokenize(long_text).size())), std::string::npos) << m;
  }
}

}  // namespace
