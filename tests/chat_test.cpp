// Chat templates: exact renderings per family (as llama.cpp's llm_chat_apply_template produces
// them), detection from real template texts, and the piecewise-rendering property that an
// interactive session relies on.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/chat.h"
#include "straw/error.h"
#include "test_util.h"

namespace straw::model {
namespace {

const std::vector<ChatMessage> kConversation{
    {"system", "You are terse."},
    {"user", "Hi"},
    {"assistant", "Hello!"},
    {"user", "Bye"},
};

std::string render(ChatTemplate t, const std::vector<ChatMessage>& msgs, bool gen = true,
                   const ChatOptions& opt = {}) {
  return apply_chat_template(t, msgs, gen, opt);
}

TEST(ChatTemplate, ChatML) {
  EXPECT_EQ(render(ChatTemplate::ChatML, kConversation),
            "<|im_start|>system\nYou are terse.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\nBye<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(render(ChatTemplate::ChatML, {{"user", "x"}}, false),
            "<|im_start|>user\nx<|im_end|>\n");
}

TEST(ChatTemplate, QwenDefaultSystemMessage) {
  const std::string qwen25_excerpt =
      "{%- if messages[0]['role'] == 'system' %}\n"
      "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
      "    {%- else %}\n"
      "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
      "helpful assistant.<|im_end|>\\n' }}\n"
      "    {%- endif %}";
  EXPECT_EQ(detect_chat_template(qwen25_excerpt), ChatTemplate::ChatML);
  const ChatOptions opt = chat_options_from_template(qwen25_excerpt);
  EXPECT_EQ(opt.default_system,
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  EXPECT_EQ(opt.assistant_prefix, "");
  EXPECT_EQ(render(ChatTemplate::ChatML, {{"user", "Hi"}}, true, opt),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // A given system message replaces the default.
  EXPECT_EQ(render(ChatTemplate::ChatML, {{"system", "S"}, {"user", "Hi"}}, true, opt),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, QwenThinkingPrefix) {
  // The generation-prompt tails of the Qwen3 and Qwen3.5 templates.
  const std::string qwen3 =
      "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n"
      "    {%- if enable_thinking is defined and enable_thinking is false %}\n"
      "        {{- '<think>\\n\\n</think>\\n\\n' }}\n    {%- endif %}\n{%- endif %}";
  const std::string qwen35 =
      "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n"
      "    {%- if enable_thinking is defined and enable_thinking is false %}\n"
      "        {{- '<think>\\n\\n</think>\\n\\n' }}\n    {%- else %}\n"
      "        {{- '<think>\\n' }}\n    {%- endif %}\n{%- endif %}";
  EXPECT_EQ(chat_options_from_template(qwen3).assistant_prefix, "");
  EXPECT_EQ(chat_options_from_template(qwen3, false).assistant_prefix, "<think>\n\n</think>\n\n");
  EXPECT_EQ(chat_options_from_template(qwen35).assistant_prefix, "<think>\n");
  EXPECT_EQ(chat_options_from_template(qwen35, false).assistant_prefix, "<think>\n\n</think>\n\n");
  EXPECT_EQ(
      render(ChatTemplate::ChatML, {{"user", "Hi"}}, true, chat_options_from_template(qwen35)),
      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n");
}

TEST(ChatTemplate, Llama3) {
  EXPECT_EQ(render(ChatTemplate::Llama3, {{"system", "You are terse."},
                                          {"user", "  Hi \n"},
                                          {"assistant", "Hello!"},
                                          {"user", "Bye"}}),
            "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Mistral) {
  EXPECT_EQ(render(ChatTemplate::MistralV1, kConversation),
            " [INST] You are terse.\n\nHi [/INST] Hello!</s> [INST] Bye [/INST]");
  EXPECT_EQ(render(ChatTemplate::MistralV3, {{"system", "You are terse."},
                                             {"user", "Hi"},
                                             {"assistant", " Hello! "},
                                             {"user", "Bye"}}),
            "[INST] You are terse.\n\nHi[/INST] Hello!</s>[INST] Bye[/INST]");
  EXPECT_EQ(render(ChatTemplate::MistralV3Tekken, kConversation),
            "[INST]You are terse.\n\nHi[/INST]Hello!</s>[INST]Bye[/INST]");
  EXPECT_EQ(render(ChatTemplate::MistralV7, kConversation),
            "[SYSTEM_PROMPT] You are terse.[/SYSTEM_PROMPT][INST] Hi[/INST] Hello!</s>"
            "[INST] Bye[/INST]");
  EXPECT_EQ(render(ChatTemplate::MistralV7Tekken, kConversation),
            "[SYSTEM_PROMPT]You are terse.[/SYSTEM_PROMPT][INST]Hi[/INST]Hello!</s>"
            "[INST]Bye[/INST]");
}

TEST(ChatTemplate, Llama2) {
  EXPECT_EQ(render(ChatTemplate::Llama2, kConversation),
            "[INST] You are terse.\nHi [/INST]Hello!</s>[INST] Bye [/INST]");
  EXPECT_EQ(render(ChatTemplate::Llama2Sys, kConversation),
            "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST]Hello!</s>[INST] Bye [/INST]");
  EXPECT_EQ(render(ChatTemplate::Llama2SysBos, kConversation),
            "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST]Hello!</s><s>[INST] Bye "
            "[/INST]");
  EXPECT_EQ(render(ChatTemplate::Llama2SysStrip,
                   {{"system", " S "}, {"user", " Hi "}, {"assistant", " A "}}),
            "[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST]A</s>");
}

TEST(ChatTemplate, Phi4AndGemma) {
  EXPECT_EQ(render(ChatTemplate::Phi4, kConversation),
            "<|im_start|>system<|im_sep|>You are terse.<|im_end|>"
            "<|im_start|>user<|im_sep|>Hi<|im_end|>"
            "<|im_start|>assistant<|im_sep|>Hello!<|im_end|>"
            "<|im_start|>user<|im_sep|>Bye<|im_end|>"
            "<|im_start|>assistant<|im_sep|>");
  EXPECT_EQ(render(ChatTemplate::Gemma, kConversation),
            "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n"
            "<start_of_turn>model\nHello!<end_of_turn>\n"
            "<start_of_turn>user\nBye<end_of_turn>\n"
            "<start_of_turn>model\n");
}

TEST(ChatTemplate, NoneThrows) {
  EXPECT_THROW(render(ChatTemplate::None, kConversation), Error);
  EXPECT_THROW(format_turn(ChatTemplate::None, ChatMessage{"user", "x"}, true), Error);
  EXPECT_THROW(assistant_terminator(ChatTemplate::None), Error);
}

const ChatTemplate kAll[] = {
    ChatTemplate::ChatML,          ChatTemplate::Phi4,      ChatTemplate::Llama3,
    ChatTemplate::Llama2,          ChatTemplate::Llama2Sys, ChatTemplate::Llama2SysBos,
    ChatTemplate::Llama2SysStrip,  ChatTemplate::MistralV1, ChatTemplate::MistralV3,
    ChatTemplate::MistralV3Tekken, ChatTemplate::MistralV7, ChatTemplate::MistralV7Tekken,
    ChatTemplate::Gemma,
};

// Feeding format_turn pieces, the replies and the terminators reproduces the whole rendering.
TEST(ChatTemplate, PiecewiseEqualsWhole) {
  const std::vector<std::string> users{"Hi", "What is 2+2?", "Thanks"};
  const std::vector<std::string> replies{"Hello!", "4.", "You're welcome."};
  const ChatOptions variants[3] = {
      {},
      {"You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", ""},
      {"", "<think>\n"},
  };
  for (const ChatTemplate t : kAll) {
    for (const bool with_system : {false, true}) {
      for (const ChatOptions& opt : variants) {
        if (!opt.assistant_prefix.empty() && generation_prompt(t).empty()) continue;
        std::vector<ChatMessage> whole;
        std::string pieces;
        for (size_t i = 0; i < users.size(); ++i) {
          std::vector<ChatMessage> turn;
          if (i == 0 && with_system) turn.push_back({"system", "Be brief."});
          turn.push_back({"user", users[i]});
          whole.insert(whole.end(), turn.begin(), turn.end());
          pieces += format_turn(t, turn, i == 0, opt);
          const std::string reply_fed = format_reply(t, replies[i]);
          ASSERT_TRUE(reply_fed.ends_with(assistant_terminator(t)));
          pieces += reply_fed;
          // The assistant message holds everything after the generation prompt.
          whole.push_back({"assistant", opt.assistant_prefix + replies[i]});
        }
        whole.push_back({"user", "One more"});
        pieces += format_turn(t, ChatMessage{"user", "One more"}, false, opt);
        EXPECT_EQ(pieces, apply_chat_template(t, whole, true, opt))
            << chat_template_name(t) << " system=" << with_system
            << " prefix=" << opt.assistant_prefix;
      }
    }
  }
}

TEST(ChatTemplate, ReplyAndTerminator) {
  EXPECT_EQ(assistant_terminator(ChatTemplate::ChatML), "<|im_end|>\n");
  EXPECT_EQ(assistant_terminator(ChatTemplate::Llama3), "<|eot_id|>");
  EXPECT_EQ(assistant_terminator(ChatTemplate::MistralV7), "</s>");
  EXPECT_EQ(format_reply(ChatTemplate::ChatML, "Hello"), "Hello<|im_end|>\n");
  EXPECT_EQ(format_reply(ChatTemplate::Llama3, " Hello \n"), "Hello<|eot_id|>");
  EXPECT_EQ(format_reply(ChatTemplate::MistralV1, "Hello"), " Hello</s>");
  EXPECT_EQ(format_reply(ChatTemplate::MistralV3Tekken, "Hello"), "Hello</s>");
  EXPECT_EQ(format_reply(ChatTemplate::Gemma, "Hello"), "Hello<end_of_turn>\n");
  EXPECT_EQ(format_turn(ChatTemplate::ChatML, ChatMessage{"user", "Hi"}, false),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(format_turn(ChatTemplate::Llama2Sys, ChatMessage{"user", "Hi"}, true),
            "[INST] Hi [/INST]");
  EXPECT_EQ(format_turn(ChatTemplate::Llama2SysBos, ChatMessage{"user", "Hi"}, false),
            "<s>[INST] Hi [/INST]");
}

TEST(ChatTemplate, Names) {
  for (const ChatTemplate t : kAll) {
    EXPECT_EQ(chat_template_from_name(chat_template_name(t)), t);
    EXPECT_EQ(detect_chat_template(chat_template_name(t)), t);
  }
  EXPECT_EQ(chat_template_from_name("vicuna"), ChatTemplate::None);
}

TEST(ChatTemplate, DetectsKnownTemplateTexts) {
  EXPECT_EQ(detect_chat_template(""), ChatTemplate::None);
  EXPECT_EQ(detect_chat_template("{{ messages }}"), ChatTemplate::None);
  // Llama 3.x (meta-llama/Llama-3.2-3B-Instruct excerpt).
  EXPECT_EQ(detect_chat_template(
                "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
                "message['content'] | trim + '<|eot_id|>' }}"),
            ChatTemplate::Llama3);
  // Mistral Nemo (v3-tekken: tool markers, "[INST]" quoted).
  EXPECT_EQ(detect_chat_template(
                "{{- \"[AVAILABLE_TOOLS][\" }}{%- if loop.last and system_message is defined %}"
                "{{- \"[INST]\" + system_message + \"\\n\\n\" + message[\"content\"] + "
                "\"[/INST]\" }}"),
            ChatTemplate::MistralV3Tekken);
  // Mistral v3 (tool markers, "[INST] " with a space).
  EXPECT_EQ(detect_chat_template("{{- \"[AVAILABLE_TOOLS] [\" }}{{- \"[INST]\\n\" }}"
                                 "{{- '[INST] ' + message['content'] }}"),
            ChatTemplate::MistralV3);
  // Mistral v1.
  EXPECT_EQ(detect_chat_template("{{- ' [INST] ' + system_message + '\\n\\n' + "
                                 "message['content'] + ' [/INST]' }}"),
            ChatTemplate::MistralV1);
  // Mistral Small 3.x (v7).
  EXPECT_EQ(detect_chat_template("{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}"
                                 "{{- '[INST]' + message['content'] + '[/INST]' }}"),
            ChatTemplate::MistralV7);
  // Llama 2 chat variants and a plain [INST] template.
  EXPECT_EQ(detect_chat_template("{{ '[INST] <<SYS>>\\n' + system_message + "
                                 "'\\n<</SYS>>\\n\\n' + message['content'] + ' [/INST]' }}"),
            ChatTemplate::Llama2Sys);
  EXPECT_EQ(detect_chat_template("{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}"
                                 "{{ '<<SYS>>\\n' + system_message }}"),
            ChatTemplate::Llama2SysBos);
  EXPECT_EQ(detect_chat_template("{% set content = message['content'] %}{{ '<<SYS>>\\n' }}"
                                 "{{ '[INST] ' + content.strip() + ' [/INST]' }}"),
            ChatTemplate::Llama2SysStrip);
  EXPECT_EQ(detect_chat_template("{{ '[INST] ' + message['content'] + ' [/INST]' }}"),
            ChatTemplate::Llama2);
  // Gemma, Phi-4, SmolVLM (not ChatML despite <|im_start|>).
  EXPECT_EQ(detect_chat_template("{{ '<start_of_turn>' + role + '\\n' }}"), ChatTemplate::Gemma);
  EXPECT_EQ(detect_chat_template("{{'<|im_start|>' + message['role'] + '<|im_sep|>'}}"),
            ChatTemplate::Phi4);
  EXPECT_EQ(detect_chat_template("<|im_start|>{% for m in messages %}User:<end_of_utterance>"),
            ChatTemplate::None);
}

TEST(ChatTemplate, DetectsTestdataTemplates) {
  STRAW_REQUIRE_TESTDATA();
  for (const char* name : {"qwen2-tiny-q8_0.gguf", "qwen3-tiny-f16.gguf"}) {
    const auto reader = gguf::Reader::open((test::testdata_dir() / "models" / name).string());
    const auto jinja = reader->find_string("tokenizer.chat_template");
    ASSERT_TRUE(jinja.has_value()) << name;
    EXPECT_EQ(detect_chat_template(*jinja), ChatTemplate::ChatML) << name;
    const ChatOptions opt = chat_options_from_template(*jinja);
    EXPECT_EQ(opt.default_system, "");
    EXPECT_EQ(opt.assistant_prefix, "");
  }
  const auto llama =
      gguf::Reader::open((test::testdata_dir() / "models" / "llama-tiny-f16.gguf").string());
  EXPECT_EQ(detect_chat_template(llama->find_string("tokenizer.chat_template").value_or("")),
            ChatTemplate::None);
}

}  // namespace
}  // namespace straw::model
