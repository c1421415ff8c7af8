// Prompt templates: the Alpaca prompt, and the Llama 2 ([INST]) and Llama 3
// (header) chat templates, rendered straight to token ids with a label per
// token (-100 where the loss ignores it). By default only completions and
// assistant turns are trained, each ending with the template's end token
// (</s> for Llama 2, <|eot_id|> for Llama 3), which is trained too: a
// fine-tuned model must learn to stop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.hpp"

namespace llamaft {

enum class Template { kNone, kLlama2, kLlama3 };
Template parse_template(const std::string& name);

struct Message {
  std::string role;  // system | user | assistant
  std::string content;
};

struct Rendered {
  std::vector<int32_t> ids;
  std::vector<int32_t> labels;  // same length; -100 = not trained
};

// The Alpaca prompt (with or without `input`), then `output`. With a chat
// template, rendered as one user turn (instruction + input) and one assistant
// turn (output).
Rendered render_alpaca(const Tokenizer& tok, Template t, const std::string& instruction, const std::string& input,
                       const std::string& output, bool train_on_prompt);
// A conversation; messages must alternate user/assistant after an optional
// system message. Only assistant turns are trained unless train_on_prompt.
Rendered render_chat(const Tokenizer& tok, Template t, const std::vector<Message>& messages, bool train_on_prompt);
// A raw document: BOS, text, EOS; everything trained.
Rendered render_text(const Tokenizer& tok, const std::string& text);

std::string alpaca_prompt(const std::string& instruction, const std::string& input);

}  // namespace llamaft
