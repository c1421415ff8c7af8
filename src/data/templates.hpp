// Prompt templates, rendered natively (no Jinja engine) straight to token ids
// with a label per token (-100 where the loss ignores it):
//   none      the Alpaca prompt for Alpaca rows, raw turns for chats
//   alpaca    llamaft's Alpaca chat template (kAlpacaJinja): single-turn it
//             is exactly the Alpaca prompt `prepare` trains by default
//   chatml    <|im_start|>role\n...<|im_end|>\n, optionally with a default
//             system turn when the chat has none (SmolLM2's template)
//   llama2    Meta's [INST] format as Llama-2-*-chat-hf's template renders it
//   llama3    Meta-Llama-3-*-Instruct's header format
//   llama3.1  Llama-3.1-*-Instruct's: a system header with "Cutting Knowledge
//             Date" and "Today Date" (date_string, 26 Jul 2024 by default)
// A model's own template (tokenizer_config.json "chat_template" or
// chat_template.jinja next to the tokenizer) is recognised by its text: it
// must equal one of the known templates (after CRLF -> LF and dropping one
// trailing newline, which Jinja drops too), or, for ChatML with a default
// system prompt, the known skeleton around that prompt. Anything else is
// refused, naming the choices: a template is never rendered wrong.
//
// Rendering follows transformers' apply_chat_template(tokenize=True): the
// text between special tokens is encoded as one piece (split at special
// tokens, as the tokenizer does), and special tokens are inserted by id. By
// default only completions and assistant turns are trained, each ending with
// the template's end token (</s>, <|eot_id|>, <|im_end|>), which is trained
// too: a fine-tuned model must learn to stop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.hpp"

namespace llamaft {

enum class TemplateFamily { kNone, kAlpaca, kChatML, kLlama2, kLlama3, kLlama31 };

struct ChatTemplate {
  TemplateFamily family = TemplateFamily::kNone;
  std::string default_system;             // chatml: system turn added when the chat has none ("" = none)
  bool always_generation_prompt = false;  // llama3: the first Meta-Llama-3-Instruct template ends every chat with
                                          // an open assistant header
  std::string date_string = "26 Jul 2024";  // llama3.1: the template's default "Today Date"
  std::string origin;                       // where it came from, for messages ("--template llama3", a file)

  std::string name() const;      // none, alpaca, chatml, llama2, llama3, llama3.1
  std::string describe() const;  // name plus its parameters and origin, for banners and manifests
};

// The templates `--template` names; "auto" and "model" resolve to the model's own.
extern const char* const kTemplateChoices;  // "auto|model|chatml|llama2|llama3|llama3.1|alpaca|none"
ChatTemplate named_template(const std::string& name);

// Recognises a Jinja chat template's text (see above); throws (exit 2) naming
// `where` and the supported templates when it is not one llamaft renders.
ChatTemplate recognise_chat_template(const std::string& jinja, const std::string& where);

// The chat template stored in `dir`: chat_template.jinja, else
// tokenizer_config.json "chat_template" (a string, or the "default" entry of
// a list). Returns false when there is none; *where names the file.
bool find_chat_template(const std::string& dir, std::string* jinja, std::string* where);

// --template for `cmd`: "auto" is the model's own template when `dir` has one,
// else `fallback`; "model" requires it; any other choice is that template.
ChatTemplate resolve_template(const std::string& option, const std::string& dir, const std::string& fallback,
                              const std::string& cmd);

// The known templates' Jinja texts (for tests, docs and `tokenize --print-template`).
struct KnownTemplate {
  const char* label;  // e.g. "Llama-2-chat (meta-llama/Llama-2-7b-chat-hf)"
  std::string jinja;
  ChatTemplate tmpl;
};
const std::vector<KnownTemplate>& known_templates();

struct Message {
  std::string role;  // system | user | assistant
  std::string content;
};

struct Rendered {
  std::vector<int32_t> ids;
  std::vector<int32_t> labels;  // same length; -100 = not trained
};

// An Alpaca row: with none or alpaca, the Alpaca prompt (with or without
// `input`) then `output` and EOS, encoded jointly; with a chat template, one
// user turn (instruction, "\n\n", input) and one assistant turn (output).
Rendered render_alpaca(const Tokenizer& tok, const ChatTemplate& t, const std::string& instruction,
                       const std::string& input, const std::string& output, bool train_on_prompt);
// A conversation; messages must alternate user/assistant after an optional
// system message (llama2), or hold system/user/assistant turns (the others).
// Only assistant turns are trained unless train_on_prompt. With
// add_generation_prompt the open assistant turn follows (as transformers'
// add_generation_prompt=True).
Rendered render_chat(const Tokenizer& tok, const ChatTemplate& t, const std::vector<Message>& messages,
                     bool train_on_prompt, bool add_generation_prompt = false);
// A raw document: BOS, text, EOS; everything trained.
Rendered render_text(const Tokenizer& tok, const std::string& text);

// The ids that end an assistant turn under `t` (those the tokenizer has).
std::vector<int32_t> end_of_turn_ids(const Tokenizer& tok, const ChatTemplate& t);

std::string alpaca_prompt(const std::string& instruction, const std::string& input);

}  // namespace llamaft
