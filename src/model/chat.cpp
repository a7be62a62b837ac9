// Chat template rendering. One Renderer, fed message by message, produces both whole
// conversations and the piecewise turns, so the two cannot drift apart: a later turn starts from
// the state a finished assistant message leaves behind.
#include "model/chat.h"

#include <array>
#include <utility>

#include "util/str.h"

namespace straw::model {

namespace {

struct NamedTemplate {
  std::string_view name;
  ChatTemplate t;
};

constexpr std::array<NamedTemplate, 14> kNames{{
    {"none", ChatTemplate::None},
    {"chatml", ChatTemplate::ChatML},
    {"phi4", ChatTemplate::Phi4},
    {"llama3", ChatTemplate::Llama3},
    {"llama2", ChatTemplate::Llama2},
    {"llama2-sys", ChatTemplate::Llama2Sys},
    {"llama2-sys-bos", ChatTemplate::Llama2SysBos},
    {"llama2-sys-strip", ChatTemplate::Llama2SysStrip},
    {"mistral-v1", ChatTemplate::MistralV1},
    {"mistral-v3", ChatTemplate::MistralV3},
    {"mistral-v3-tekken", ChatTemplate::MistralV3Tekken},
    {"mistral-v7", ChatTemplate::MistralV7},
    {"mistral-v7-tekken", ChatTemplate::MistralV7Tekken},
    {"gemma", ChatTemplate::Gemma},
}};

constexpr std::string_view kQwenSystem =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

// Trims the ASCII whitespace llama.cpp's trim() removes (isspace in the C locale).
std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\v\f\r";
  const size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kSpace) - b + 1);
}

bool is_llama2(ChatTemplate t) {
  return t == ChatTemplate::Llama2 || t == ChatTemplate::Llama2Sys ||
         t == ChatTemplate::Llama2SysBos || t == ChatTemplate::Llama2SysStrip;
}

void require_template(ChatTemplate t, const char* what) {
  if (t == ChatTemplate::None)
    fail(what,
         ": the model has no chat template straw knows (tokenizer.chat_template is missing or "
         "unrecognized); choose one by name (chatml, llama3, llama2, mistral-v1, mistral-v3, "
         "mistral-v3-tekken, mistral-v7, mistral-v7-tekken, phi4, gemma)");
}

}  // namespace

std::string_view generation_prompt(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::ChatML:
      return "<|im_start|>assistant\n";
    case ChatTemplate::Phi4:
      return "<|im_start|>assistant<|im_sep|>";
    case ChatTemplate::Llama3:
      return "<|start_header_id|>assistant<|end_header_id|>\n\n";
    case ChatTemplate::Gemma:
      return "<start_of_turn>model\n";
    default:
      return "";
  }
}

namespace {

// Renders messages one at a time. `inside_turn` (Llama 2, Mistral v1/v3): an [INST] is open and
// not yet closed by an assistant message. `pending_system` (Gemma, which has no system role): a
// system text waiting to be put at the top of the next non-model message.
class Renderer {
 public:
  // `fresh`: the start of a conversation; otherwise the state after a complete assistant reply.
  Renderer(ChatTemplate t, bool fresh) : t_(t) {
    if (is_llama2(t_) && fresh) {
      // llama.cpp opens the first [INST] unconditionally (BOS precedes it via the tokenizer).
      out_ = "[INST] ";
      inside_turn_ = true;
    }
  }

  void message(std::string_view role, std::string_view content) {
    switch (t_) {
      case ChatTemplate::None:
        break;
      case ChatTemplate::ChatML:
        out_ += str("<|im_start|>", role, "\n", content, "<|im_end|>\n");
        break;
      case ChatTemplate::Phi4:
        out_ += str("<|im_start|>", role, "<|im_sep|>", content, "<|im_end|>");
        break;
      case ChatTemplate::Llama3:
        out_ +=
            str("<|start_header_id|>", role, "<|end_header_id|>\n\n", trim(content), "<|eot_id|>");
        break;
      case ChatTemplate::Llama2:
      case ChatTemplate::Llama2Sys:
      case ChatTemplate::Llama2SysBos:
      case ChatTemplate::Llama2SysStrip:
        llama2(role, content);
        break;
      case ChatTemplate::MistralV1:
      case ChatTemplate::MistralV3:
      case ChatTemplate::MistralV3Tekken:
        mistral_v1_v3(role, content);
        break;
      case ChatTemplate::MistralV7:
      case ChatTemplate::MistralV7Tekken: {
        const std::string_view sp = t_ == ChatTemplate::MistralV7 ? " " : "";
        if (role == "system") {
          out_ += str("[SYSTEM_PROMPT]", sp, content, "[/SYSTEM_PROMPT]");
        } else if (role == "user") {
          out_ += str("[INST]", sp, content, "[/INST]");
        } else {
          out_ += str(sp, content, "</s>");
        }
        break;
      }
      case ChatTemplate::Gemma:
        gemma(role, content);
        break;
    }
  }

  void add_generation_prompt(const ChatOptions& opt) {
    out_ += generation_prompt(t_);
    out_ += opt.assistant_prefix;
  }

  size_t size() const { return out_.size(); }
  std::string take() { return std::move(out_); }

 private:
  void llama2(std::string_view role, std::string_view raw) {
    const bool with_sys = t_ != ChatTemplate::Llama2;
    const std::string_view content = t_ == ChatTemplate::Llama2SysStrip ? trim(raw) : raw;
    if (!inside_turn_) {
      inside_turn_ = true;
      out_ += t_ == ChatTemplate::Llama2SysBos ? "<s>[INST] " : "[INST] ";
    }
    if (role == "system") {
      // Without <<SYS>> support the system text still goes in, plainly.
      out_ += with_sys ? str("<<SYS>>\n", content, "\n<</SYS>>\n\n") : str(content, "\n");
    } else if (role == "user") {
      out_ += str(content, " [/INST]");
    } else {
      out_ += str(content, "</s>");
      inside_turn_ = false;
    }
  }

  void mistral_v1_v3(std::string_view role, std::string_view content) {
    const std::string_view lead = t_ == ChatTemplate::MistralV1 ? " " : "";
    const std::string_view trail = t_ == ChatTemplate::MistralV3Tekken ? "" : " ";
    if (!inside_turn_) {
      out_ += str(lead, "[INST]", trail);
      inside_turn_ = true;
    }
    if (role == "system") {
      out_ += str(content, "\n\n");
    } else if (role == "user") {
      out_ += str(content, lead, "[/INST]");
    } else {
      out_ += str(trail, t_ == ChatTemplate::MistralV3 ? trim(content) : content, "</s>");
      inside_turn_ = false;
    }
  }

  void gemma(std::string_view role, std::string_view content) {
    if (role == "system") {
      pending_system_ += trim(content);
      return;
    }
    const std::string_view r = role == "assistant" ? std::string_view("model") : role;
    out_ += str("<start_of_turn>", r, "\n");
    if (!pending_system_.empty() && r != "model") {
      out_ += str(pending_system_, "\n\n");
      pending_system_.clear();
    }
    out_ += str(trim(content), "<end_of_turn>\n");
  }

  ChatTemplate t_;
  std::string out_;
  bool inside_turn_ = false;
  std::string pending_system_;
};

// Renders `msgs` after `r`'s current state, first the default system message when this is the
// conversation's start and it does not open with a system message.
void render_messages(Renderer& r, std::span<const ChatMessage> msgs, bool fresh,
                     const ChatOptions& opt) {
  if (fresh && !opt.default_system.empty() && (msgs.empty() || msgs.front().role != "system"))
    r.message("system", opt.default_system);
  for (const ChatMessage& m : msgs) r.message(m.role, m.content);
}

}  // namespace

std::string_view chat_template_name(ChatTemplate t) {
  for (const NamedTemplate& n : kNames)
    if (n.t == t) return n.name;
  return "none";
}

ChatTemplate chat_template_from_name(std::string_view name) {
  for (const NamedTemplate& n : kNames)
    if (n.name == name) return n.t;
  return ChatTemplate::None;
}

ChatTemplate detect_chat_template(std::string_view jinja) {
  if (jinja.empty()) return ChatTemplate::None;
  if (const ChatTemplate by_name = chat_template_from_name(jinja); by_name != ChatTemplate::None)
    return by_name;
  const auto has = [jinja](std::string_view s) { return jinja.find(s) != std::string_view::npos; };
  if (has("<|im_start|>")) {
    if (has("<|im_sep|>")) return ChatTemplate::Phi4;
    // SmolVLM uses <|im_start|> as its BOS but is not ChatML.
    if (has("<end_of_utterance>")) return ChatTemplate::None;
    return ChatTemplate::ChatML;
  }
  if (jinja.starts_with("mistral") || has("[INST]")) {
    if (has("[SYSTEM_PROMPT]")) return ChatTemplate::MistralV7;
    // The official v1 template, and v3 / v3-tekken (which carry tool markers).
    if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) {
      if (has(" [INST]")) return ChatTemplate::MistralV1;
      if (has("\"[INST]\"")) return ChatTemplate::MistralV3Tekken;
      return ChatTemplate::MistralV3;
    }
    if (has("content.strip()")) return ChatTemplate::Llama2SysStrip;
    if (has("bos_token + '[INST]")) return ChatTemplate::Llama2SysBos;
    if (has("<<SYS>>")) return ChatTemplate::Llama2Sys;
    return ChatTemplate::Llama2;
  }
  if (has("<start_of_turn>")) return ChatTemplate::Gemma;
  if (has("<|start_header_id|>") && has("<|end_header_id|>")) return ChatTemplate::Llama3;
  return ChatTemplate::None;
}

ChatOptions chat_options_from_template(std::string_view jinja, bool enable_thinking) {
  const auto has = [jinja](std::string_view s) { return jinja.find(s) != std::string_view::npos; };
  ChatOptions opt;
  if (has(kQwenSystem)) opt.default_system = kQwenSystem;
  // The Jinja source spells newlines as the two characters \n.
  if (!enable_thinking && has("'<think>\\n\\n</think>\\n\\n'")) {
    opt.assistant_prefix = "<think>\n\n</think>\n\n";
  } else if (enable_thinking && has("'<think>\\n' }}")) {
    opt.assistant_prefix = "<think>\n";
  }
  return opt;
}

std::string apply_chat_template(ChatTemplate t, std::span<const ChatMessage> msgs,
                                bool add_generation_prompt, const ChatOptions& opt) {
  require_template(t, "apply_chat_template");
  Renderer r(t, /*fresh=*/true);
  render_messages(r, msgs, /*fresh=*/true, opt);
  if (add_generation_prompt) r.add_generation_prompt(opt);
  return r.take();
}

std::string format_turn(ChatTemplate t, std::span<const ChatMessage> new_msgs, bool first_turn,
                        const ChatOptions& opt) {
  require_template(t, "format_turn");
  Renderer r(t, first_turn);
  render_messages(r, new_msgs, first_turn, opt);
  r.add_generation_prompt(opt);
  return r.take();
}

std::string format_turn(ChatTemplate t, const ChatMessage& user, bool first_turn,
                        const ChatOptions& opt) {
  return format_turn(t, std::span<const ChatMessage>(&user, 1), first_turn, opt);
}

std::string assistant_terminator(ChatTemplate t) {
  require_template(t, "assistant_terminator");
  switch (t) {
    case ChatTemplate::ChatML:
      return "<|im_end|>\n";
    case ChatTemplate::Phi4:
      return "<|im_end|>";
    case ChatTemplate::Llama3:
      return "<|eot_id|>";
    case ChatTemplate::Gemma:
      return "<end_of_turn>\n";
    default:
      return "</s>";  // Llama 2 and Mistral
  }
}

std::string format_reply(ChatTemplate t, std::string_view content) {
  require_template(t, "format_reply");
  // Render the message in the state a user turn leaves (an [INST] open) and drop the
  // generation prompt the template puts in front of it.
  Renderer r(t, /*fresh=*/false);
  r.message("user", "");
  const size_t start = r.size() + generation_prompt(t).size();
  r.message("assistant", content);
  return r.take().substr(start);
}

}  // namespace straw::model
