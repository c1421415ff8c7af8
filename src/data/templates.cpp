#include "data/templates.hpp"

#include "core/error.hpp"
#include "core/ignore_index.hpp"

namespace llamaft {

namespace {

constexpr int32_t kIgnore = kIgnoreIndex;

std::string strip(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

void append(Rendered& r, const std::vector<int32_t>& ids, bool trained) {
  r.ids.insert(r.ids.end(), ids.begin(), ids.end());
  for (int32_t id : ids) r.labels.push_back(trained ? id : kIgnore);
}

int32_t required_special(const Tokenizer& tok, const std::string& name, const char* tmpl) {
  const int32_t id = tok.special_id(name);
  LLAMAFT_REQUIRE(id >= 0, "template ", tmpl, " needs the special token ", name, ", which this tokenizer (",
                  tok.kind(), ") does not have; use the matching tokenizer or --template none");
  return id;
}

// prompt + completion encoded jointly (as the reference does) and split where
// the prompt's own encoding ends, so tokens at the seam are exactly the
// reference's.
void append_joint(Rendered& r, const Tokenizer& tok, const std::string& prompt, const std::string& completion,
                  bool train_on_prompt) {
  const std::vector<int32_t> joint = tok.encode(prompt + completion);
  const std::vector<int32_t> head = tok.encode(prompt);
  size_t split = 0;
  while (split < head.size() && split < joint.size() && head[split] == joint[split]) ++split;
  for (size_t i = 0; i < joint.size(); ++i) {
    r.ids.push_back(joint[i]);
    r.labels.push_back(train_on_prompt || i >= split ? joint[i] : kIgnore);
  }
}

}  // namespace

Template parse_template(const std::string& name) {
  if (name == "none") return Template::kNone;
  if (name == "llama2") return Template::kLlama2;
  if (name == "llama3") return Template::kLlama3;
  LLAMAFT_FAIL("unknown template '", name, "' (llama2|llama3|none)");
}

std::string alpaca_prompt(const std::string& instruction, const std::string& input) {
  if (input.empty())
    return "Below is an instruction that describes a task. Write a response that appropriately completes the "
           "request.\n\n### Instruction:\n" + instruction + "\n\n### Response:\n";
  return "Below is an instruction that describes a task, paired with an input that provides further context. "
         "Write a response that appropriately completes the request.\n\n### Instruction:\n" + instruction +
         "\n\n### Input:\n" + input + "\n\n### Response:\n";
}

Rendered render_alpaca(const Tokenizer& tok, Template t, const std::string& instruction, const std::string& input,
                       const std::string& output, bool train_on_prompt) {
  if (t != Template::kNone) {
    const std::string user = input.empty() ? instruction : instruction + "\n\n" + input;
    return render_chat(tok, t, {{"user", user}, {"assistant", output}}, train_on_prompt);
  }
  Rendered r;
  append(r, {tok.bos_id()}, train_on_prompt);
  append_joint(r, tok, alpaca_prompt(instruction, input), output, train_on_prompt);
  append(r, {tok.eos_id()}, true);
  return r;
}

Rendered render_chat(const Tokenizer& tok, Template t, const std::vector<Message>& messages, bool train_on_prompt) {
  LLAMAFT_REQUIRE(!messages.empty(), "a chat needs at least one message");
  for (const auto& m : messages)
    LLAMAFT_REQUIRE(m.role == "system" || m.role == "user" || m.role == "assistant", "unknown chat role '", m.role,
                    "' (system, user, assistant)");
  Rendered r;
  if (t == Template::kLlama3) {
    // <|begin_of_text|> then per message: <|start_header_id|>role<|end_header_id|>\n\n content <|eot_id|>
    const int32_t start = required_special(tok, "<|start_header_id|>", "llama3");
    const int32_t end = required_special(tok, "<|end_header_id|>", "llama3");
    const int32_t eot = required_special(tok, "<|eot_id|>", "llama3");
    append(r, {required_special(tok, "<|begin_of_text|>", "llama3")}, train_on_prompt);
    for (const auto& m : messages) {
      const bool trained = train_on_prompt || m.role == "assistant";
      std::vector<int32_t> header = {start};
      const auto role = tok.encode(m.role);
      header.insert(header.end(), role.begin(), role.end());
      header.push_back(end);
      const auto nl = tok.encode("\n\n");
      header.insert(header.end(), nl.begin(), nl.end());
      append(r, header, train_on_prompt);
      append(r, tok.encode(strip(m.content)), trained);
      append(r, {eot}, trained);
    }
    return r;
  }
  if (t == Template::kLlama2) {
    // Meta's chat_completion: per (user, assistant) pair,
    // <s>[INST] {user} [/INST] {assistant} </s>; a system message is folded
    // into the first user turn as <<SYS>>\n{system}\n<</SYS>>\n\n.
    std::vector<Message> msgs = messages;
    if (msgs[0].role == "system") {
      LLAMAFT_REQUIRE(msgs.size() > 1 && msgs[1].role == "user", "a system message must be followed by a user turn");
      msgs[1].content = "<<SYS>>\n" + msgs[0].content + "\n<</SYS>>\n\n" + msgs[1].content;
      msgs.erase(msgs.begin());
    }
    for (size_t i = 0; i < msgs.size(); i += 2) {
      LLAMAFT_REQUIRE(msgs[i].role == "user", "llama2 chats alternate user/assistant; turn ", i + 1, " is '",
                      msgs[i].role, "'");
      append(r, {tok.bos_id()}, train_on_prompt);
      append(r, tok.encode("[INST] " + strip(msgs[i].content) + " [/INST]"), train_on_prompt);
      if (i + 1 < msgs.size()) {
        LLAMAFT_REQUIRE(msgs[i + 1].role == "assistant", "llama2 chats alternate user/assistant; turn ", i + 2,
                        " is '", msgs[i + 1].role, "'");
        // The leading space comes from SentencePiece's dummy prefix.
        append(r, tok.encode(strip(msgs[i + 1].content) + " "), true);
        append(r, {tok.eos_id()}, true);
      }
    }
    return r;
  }
  // No template: the turns' text back to back, assistant turns trained.
  append(r, {tok.bos_id()}, train_on_prompt);
  for (const auto& m : messages) append(r, tok.encode(m.content), train_on_prompt || m.role == "assistant");
  append(r, {tok.eos_id()}, true);
  return r;
}

Rendered render_text(const Tokenizer& tok, const std::string& text) {
  Rendered r;
  append(r, {tok.bos_id()}, true);
  append(r, tok.encode(text), true);
  append(r, {tok.eos_id()}, true);
  return r;
}

}  // namespace llamaft
