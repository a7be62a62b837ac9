// Chat templates: the fixed renderings llama.cpp uses for the common families (src/llama-chat.cpp,
// llm_chat_apply_template), chosen from a model's `tokenizer.chat_template` Jinja text by the
// same substring heuristics (llm_chat_detect_template) or by name. Not a Jinja interpreter.
//
// Besides whole conversations, a conversation can be rendered piecewise, so that an interactive
// session keeps its KV cache and only feeds what is new:
//   format_turn(t, {system?, user}, /*first_turn=*/true, opt)   -> ... generation prompt
//   <the model's reply, without its end-of-generation token>
//   assistant_terminator(t)
//   format_turn(t, {user}, /*first_turn=*/false, opt)           -> ... generation prompt
//   ...
// and the concatenation equals apply_chat_template() of the whole conversation with
// add_generation_prompt, where each assistant message's rendering after the generation prompt,
// format_reply(t, content), is the reply followed by the terminator (Llama 3, Gemma and
// Mistral v3 trim the content; Mistral v1/v3/v7 put a space before it; see format_reply).
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace straw::model {

enum class ChatTemplate {
  None,             // no template known: apply_chat_template throws
  ChatML,           // <|im_start|>role\ncontent<|im_end|>\n (Qwen, many others)
  Phi4,             // ChatML with <|im_sep|> after the role and no newlines
  Llama3,           // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
  Llama2,           // [INST] user [/INST]assistant</s>; a system message is put in plainly
  Llama2Sys,        // Llama 2 with <<SYS>>\n...\n<</SYS>>\n\n system messages
  Llama2SysBos,     // ... and <s> before each later [INST]
  Llama2SysStrip,   // ... and contents trimmed
  MistralV1,        // " [INST] user [/INST] assistant</s>"
  MistralV3,        // "[INST] user[/INST] assistant</s>" (assistant content trimmed)
  MistralV3Tekken,  // "[INST]user[/INST]assistant</s>"
  MistralV7,        // [SYSTEM_PROMPT] s[/SYSTEM_PROMPT][INST] u[/INST] a</s>
  MistralV7Tekken,  // the same without the spaces
  Gemma,            // <start_of_turn>user\n...<end_of_turn>\n, "model" for the assistant
};

// The llama.cpp name of a template ("chatml", "llama3", "mistral-v7-tekken", ...; "none").
std::string_view chat_template_name(ChatTemplate t);

// The template with that llama.cpp name; None for an unknown name.
ChatTemplate chat_template_from_name(std::string_view name);

// From a `tokenizer.chat_template` text (or a template name): ChatML if it contains
// "<|im_start|>" (Phi4 with "<|im_sep|>"; None for SmolVLM's "<end_of_utterance>", which is not
// ChatML), the Mistral/Llama 2 family if it contains "[INST]" (variants told apart as llama.cpp
// does: "[SYSTEM_PROMPT]" -> v7; official v1/v3 markers -> v1, v3-tekken or v3; else Llama 2 by
// its <<SYS>>, "bos_token + '[INST]" and "content.strip()" markers), Gemma for
// "<start_of_turn>", Llama3 for "<|start_header_id|>" with "<|end_header_id|>"; None if empty or
// unknown. (llama.cpp picks v7-tekken only by name; so does this.)
ChatTemplate detect_chat_template(std::string_view jinja);

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (other roles render as given)
  std::string content;
};

struct ChatOptions {
  // Prepended as a system message when the conversation does not start with one (Qwen2.5's
  // templates do this with "You are Qwen, created by Alibaba Cloud. ..."); empty: nothing.
  std::string default_system;
  // Appended after the generation prompt (Qwen3.5: "<think>\n"; "<think>\n\n</think>\n\n" turns
  // thinking off in Qwen3/Qwen3.5). For the piecewise property the assistant message content
  // must then be this prefix followed by the reply (and the template must have a generation
  // prompt: the Llama 2 / Mistral renderings put their space before the whole content).
  std::string assistant_prefix;
};

// The options a template's Jinja text implies: Qwen2.5's default system message when the text
// contains it; Qwen3.5's "<think>\n" generation prefix when the text emits it, or the empty think
// block when `enable_thinking` is false and the text supports disabling thinking (Qwen3,
// Qwen3.5).
ChatOptions chat_options_from_template(std::string_view jinja, bool enable_thinking = true);

// The text that opens the assistant's reply ("<|im_start|>assistant\n" for ChatML); empty for the
// Llama 2 and Mistral families, whose replies simply follow [/INST].
std::string_view generation_prompt(ChatTemplate t);

// The whole conversation, plus the generation prompt (and opt.assistant_prefix) when
// `add_generation_prompt` (the Llama 2 and Mistral families have no generation prompt). BOS is
// not included: the tokenizer adds it. Throws straw::Error for ChatTemplate::None.
std::string apply_chat_template(ChatTemplate t, std::span<const ChatMessage> msgs,
                                bool add_generation_prompt, const ChatOptions& opt = {});

// The new messages of a conversation followed by the generation prompt and
// opt.assistant_prefix. `first_turn`: nothing precedes them (opt.default_system applies);
// otherwise what precedes ends with a complete assistant reply and its terminator.
std::string format_turn(ChatTemplate t, std::span<const ChatMessage> new_msgs, bool first_turn,
                        const ChatOptions& opt = {});
std::string format_turn(ChatTemplate t, const ChatMessage& user, bool first_turn,
                        const ChatOptions& opt = {});

// What to feed after a generated reply (the end-of-generation token itself not having been fed):
// "<|im_end|>\n" for ChatML, "<|eot_id|>" for Llama 3, "</s>" for Llama 2 / Mistral, ...
std::string assistant_terminator(ChatTemplate t);

// An assistant message as the full template renders it after the generation prompt: the reply
// text the model is expected to produce (the content, trimmed or with a leading space where the
// template does that) followed by assistant_terminator(t).
std::string format_reply(ChatTemplate t, std::string_view content);

}  // namespace straw::model
