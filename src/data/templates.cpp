#include "data/templates.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "core/ignore_index.hpp"
#include "data/python_str.hpp"

namespace llamaft {

namespace {

constexpr int32_t kIgnore = kIgnoreIndex;

// ---------------------------------------------------------------------------
// The known templates, byte for byte as their models ship them (in
// tokenizer_config.json, JSON-decoded). Inside the Jinja string literals of
// the Llama 2 and Llama 3.1 templates "\n" is Jinja's escape (a backslash and
// an n in the text); the ChatML and Llama 3 templates hold real newlines.

// teknium/OpenHermes-2.5-Mistral-7B and the transformers documentation's ChatML.
constexpr const char* kChatMLJinja =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
// The same with an explicit add_generation_prompt default (many fine-tunes).
constexpr const char* kChatMLDefinedJinja =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
// HuggingFaceTB/SmolLM2-*-Instruct (and Qwen1.5's): a default system turn
// around a prompt literal, recognised for any prompt without ', \, braces or "<|".
constexpr const char* kChatMLSystemHead =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n";
constexpr const char* kChatMLSystemTail =
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
constexpr const char* kSmolLM2System = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

// meta-llama/Llama-2-{7,13,70}b-chat-hf.
constexpr const char* kLlama2Jinja =
    R"jinja({% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %})jinja";

// meta-llama/Meta-Llama-3-{8,70}B-Instruct (current revision).
constexpr const char* kLlama3Jinja =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
// Its first revision: every chat ends with an open assistant header.
constexpr const char* kLlama3FirstJinja =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}";

// meta-llama/Llama-3.1-{8,70,405}B-Instruct. The tool paths (tools,
// builtin_tools, tool/ipython turns) are not rendered: transformers passes
// tools=None, and llamaft's chats hold system/user/assistant turns only.
constexpr const char* kLlama31Head = R"jinja({{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
)jinja";
constexpr const char* kLlama31ToolsNone = R"jinja({%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
)jinja";
constexpr const char* kLlama31Body = R"jinja(
{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)jinja";
// Llama 3.1's template is kLlama31Head + kLlama31ToolsNone + kLlama31Body; an
// earlier revision lacks the tools default (transformers always passes tools,
// so it renders the same).

// llamaft's Alpaca chat template: single-turn (no system message) it renders
// exactly the Alpaca prompt + response + EOS that `prepare --format alpaca
// --template none` trains; a system message replaces the preamble; turns after
// an EOS are separated by a blank line.
constexpr const char* kAlpacaJinja =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}{% set "
    "loop_messages = messages[1:] %}{% else %}{{ 'Below is an instruction that describes a task. Write a response "
    "that appropriately completes the request.\\n\\n' }}{% set loop_messages = messages %}{% endif %}{% for "
    "message in loop_messages %}{% if message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + "
    "'\\n\\n' }}{% elif message['role'] == 'assistant' %}{{ '### Response:\\n' + message['content'] + eos_token "
    "}}{% if not loop.last %}{{ '\\n\\n' }}{% endif %}{% else %}{{ raise_exception('Alpaca chats hold user and "
    "assistant turns after an optional system message') }}{% endif %}{% endfor %}{% if add_generation_prompt "
    "%}{{ '### Response:\\n' }}{% endif %}";

constexpr const char* kAlpacaPreamble =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n";

ChatTemplate make(TemplateFamily f, std::string default_system = "", bool always_gen = false) {
  ChatTemplate t;
  t.family = f;
  t.default_system = std::move(default_system);
  t.always_generation_prompt = always_gen;
  return t;
}

std::string normalize_jinja(std::string s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i)
    if (!(s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n')) out.push_back(s[i]);
  if (!out.empty() && out.back() == '\n') out.pop_back();  // Jinja's keep_trailing_newline=False
  return out;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// ---------------------------------------------------------------------------
// Rendering: pieces of text and special ids, each trained or not; the text
// between special tokens is encoded as one run (as the tokenizer splits the
// rendered string at special tokens), and the labels are split where each
// part's prefix stops matching the run's encoding.

struct Piece {
  int32_t id;  // >= 0: a special token
  std::string text;
  bool trained;
};

class Builder {
 public:
  explicit Builder(const Tokenizer& tok) : tok_(tok) {}
  void special(int32_t id, bool trained) { pieces_.push_back({id, "", trained}); }
  void text(const std::string& s, bool trained) {
    if (!s.empty()) pieces_.push_back({-1, s, trained});
  }
  Rendered finish() const {
    Rendered r;
    for (size_t i = 0; i < pieces_.size();) {
      if (pieces_[i].id >= 0) {
        r.ids.push_back(pieces_[i].id);
        r.labels.push_back(pieces_[i].trained ? pieces_[i].id : kIgnore);
        ++i;
        continue;
      }
      // A run of text pieces; neighbours with the same flag are one part.
      std::vector<std::pair<std::string, bool>> parts;
      for (; i < pieces_.size() && pieces_[i].id < 0; ++i) {
        if (!parts.empty() && parts.back().second == pieces_[i].trained)
          parts.back().first += pieces_[i].text;
        else
          parts.emplace_back(pieces_[i].text, pieces_[i].trained);
      }
      std::string full;
      for (const auto& p : parts) full += p.first;
      const std::vector<int32_t> ids = tok_.encode(full);
      std::vector<size_t> ends;  // end (exclusive) of each part's tokens
      std::string prefix;
      size_t last = 0;
      for (size_t k = 0; k + 1 < parts.size(); ++k) {
        prefix += parts[k].first;
        const std::vector<int32_t> head = tok_.encode(prefix);
        size_t common = 0;
        while (common < head.size() && common < ids.size() && head[common] == ids[common]) ++common;
        last = std::max(last, common);
        ends.push_back(last);
      }
      ends.push_back(ids.size());
      size_t part = 0;
      for (size_t t = 0; t < ids.size(); ++t) {
        while (t >= ends[part]) ++part;
        r.ids.push_back(ids[t]);
        r.labels.push_back(parts[part].second ? ids[t] : kIgnore);
      }
    }
    return r;
  }

 private:
  const Tokenizer& tok_;
  std::vector<Piece> pieces_;
};

int32_t required_special(const Tokenizer& tok, const std::string& name, const ChatTemplate& t) {
  const int32_t id = tok.special_id(name);
  LLAMAFT_REQUIRE(id >= 0, "the ", t.name(), " template needs the special token ", name, ", which this tokenizer (",
                  tok.kind(), ") does not have; use the model's own tokenizer or another --template");
  return id;
}

int32_t required_bos(const Tokenizer& tok, const ChatTemplate& t) {
  LLAMAFT_REQUIRE(tok.bos_id() >= 0, "the ", t.name(), " template starts with the BOS token, which this tokenizer (",
                  tok.kind(), ") does not define");
  return tok.bos_id();
}

int32_t required_eos(const Tokenizer& tok, const ChatTemplate& t) {
  LLAMAFT_REQUIRE(tok.eos_id() >= 0, "the ", t.name(), " template ends turns with the EOS token, which this tokenizer (",
                  tok.kind(), ") does not define");
  return tok.eos_id();
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

void append(Rendered& r, const std::vector<int32_t>& ids, bool trained) {
  r.ids.insert(r.ids.end(), ids.begin(), ids.end());
  for (int32_t id : ids) r.labels.push_back(trained ? id : kIgnore);
}

void require_roles(const std::vector<Message>& messages) {
  LLAMAFT_REQUIRE(!messages.empty(), "a chat needs at least one message");
  for (const auto& m : messages)
    LLAMAFT_REQUIRE(m.role == "system" || m.role == "user" || m.role == "assistant", "unknown chat role '", m.role,
                    "' (system, user, assistant)");
}

// Llama 3 and 3.1: <|start_header_id|>role<|end_header_id|>\n\n{content}<|eot_id|>
void llama3_turn(Builder& b, const Tokenizer& tok, const ChatTemplate& t, const std::string& role,
                 const std::string& content, bool header_trained, bool trained) {
  b.special(required_special(tok, "<|start_header_id|>", t), header_trained);
  b.text(role, header_trained);
  b.special(required_special(tok, "<|end_header_id|>", t), header_trained);
  b.text("\n\n", header_trained);
  b.text(content, trained);
  b.special(required_special(tok, "<|eot_id|>", t), trained);
}

void llama3_generation_prompt(Builder& b, const Tokenizer& tok, const ChatTemplate& t, bool trained) {
  b.special(required_special(tok, "<|start_header_id|>", t), trained);
  b.text("assistant", trained);
  b.special(required_special(tok, "<|end_header_id|>", t), trained);
  b.text("\n\n", trained);
}

}  // namespace

const char* const kTemplateChoices = "auto|model|chatml|llama2|llama3|llama3.1|alpaca|none";

std::string ChatTemplate::name() const {
  switch (family) {
    case TemplateFamily::kNone: return "none";
    case TemplateFamily::kAlpaca: return "alpaca";
    case TemplateFamily::kChatML: return "chatml";
    case TemplateFamily::kLlama2: return "llama2";
    case TemplateFamily::kLlama3: return "llama3";
    case TemplateFamily::kLlama31: return "llama3.1";
  }
  return "none";
}

std::string ChatTemplate::describe() const {
  std::string s = name();
  if (!default_system.empty()) s += " (default system prompt \"" + default_system + "\")";
  if (always_generation_prompt) s += " (first revision: always ends with an open assistant header)";
  if (family == TemplateFamily::kLlama31) s += " (Today Date: " + date_string + ")";
  if (!origin.empty()) s += ", " + origin;
  return s;
}

const std::vector<KnownTemplate>& known_templates() {
  static const std::vector<KnownTemplate> known = {
      {"ChatML (OpenHermes-2.5, transformers docs)", kChatMLJinja, make(TemplateFamily::kChatML)},
      {"ChatML with an add_generation_prompt default", kChatMLDefinedJinja, make(TemplateFamily::kChatML)},
      {"ChatML with a default system prompt (HuggingFaceTB/SmolLM2-*-Instruct)",
       std::string(kChatMLSystemHead) + kSmolLM2System + kChatMLSystemTail,
       make(TemplateFamily::kChatML, kSmolLM2System)},
      {"Llama 2 chat (meta-llama/Llama-2-*-chat-hf)", kLlama2Jinja, make(TemplateFamily::kLlama2)},
      {"Llama 3 (meta-llama/Meta-Llama-3-*-Instruct)", kLlama3Jinja, make(TemplateFamily::kLlama3)},
      {"Llama 3, first revision (meta-llama/Meta-Llama-3-*-Instruct)", kLlama3FirstJinja,
       make(TemplateFamily::kLlama3, "", true)},
      {"Llama 3.1 (meta-llama/Llama-3.1-*-Instruct)", std::string(kLlama31Head) + kLlama31ToolsNone + kLlama31Body,
       make(TemplateFamily::kLlama31)},
      {"Llama 3.1 without the tools default", std::string(kLlama31Head) + kLlama31Body,
       make(TemplateFamily::kLlama31)},
      {"Alpaca (llamaft)", kAlpacaJinja, make(TemplateFamily::kAlpaca)},
  };
  return known;
}

ChatTemplate named_template(const std::string& name) {
  ChatTemplate t;
  if (name == "none") t = make(TemplateFamily::kNone);
  else if (name == "alpaca") t = make(TemplateFamily::kAlpaca);
  else if (name == "chatml") t = make(TemplateFamily::kChatML);
  else if (name == "llama2") t = make(TemplateFamily::kLlama2);
  else if (name == "llama3") t = make(TemplateFamily::kLlama3);
  else if (name == "llama3.1") t = make(TemplateFamily::kLlama31);
  else LLAMAFT_FAIL("unknown template '", name, "' (", kTemplateChoices, ")");
  t.origin = "--template " + name;
  return t;
}

ChatTemplate recognise_chat_template(const std::string& jinja, const std::string& where) {
  const std::string text = normalize_jinja(jinja);
  for (const KnownTemplate& k : known_templates()) {
    if (normalize_jinja(k.jinja) != text) continue;
    ChatTemplate t = k.tmpl;
    t.origin = "the model's own template (" + std::string(k.label) + ") from " + where;
    return t;
  }
  // ChatML with a default system prompt: the known skeleton around a literal.
  const std::string head = kChatMLSystemHead, tail = kChatMLSystemTail;
  if (text.size() > head.size() + tail.size() && text.compare(0, head.size(), head) == 0 &&
      text.compare(text.size() - tail.size(), tail.size(), tail) == 0) {
    const std::string prompt = text.substr(head.size(), text.size() - head.size() - tail.size());
    // A plain literal: no quote, escape or braces, and no special-token text
    // (transformers would turn "<|im_end|>" there into the token).
    if (prompt.find_first_of("'\\{}") == std::string::npos && prompt.find("<|") == std::string::npos) {
      ChatTemplate t = make(TemplateFamily::kChatML, prompt);
      t.origin = "the model's own template (ChatML with a default system prompt) from " + where;
      return t;
    }
  }
  char hash[17];
  std::snprintf(hash, sizeof(hash), "%016llx", static_cast<unsigned long long>(fnv1a(text)));
  LLAMAFT_FAIL(where, ": the chat template (", text.size(), " characters, fnv1a ", hash,
               ") is not one llamaft renders. It renders these templates natively, recognised by their exact text: "
               "ChatML (with or without a default system prompt, as SmolLM2's), Llama 2 [INST], Llama 3, Llama 3.1 "
               "and Alpaca. Choose one explicitly with --template chatml|llama2|llama3|llama3.1|alpaca|none "
               "(none: the raw text, or the Alpaca prompt for Alpaca rows)");
}

bool find_chat_template(const std::string& dir, std::string* jinja, std::string* where) {
  if (dir.empty()) return false;
  struct stat st;
  const std::string jfile = dir + "/chat_template.jinja";
  if (stat(jfile.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    std::ifstream in(jfile, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    LLAMAFT_REQUIRE(in.good() || in.eof(), "cannot read '", jfile, "'");
    *jinja = ss.str();
    *where = jfile;
    return true;
  }
  const std::string cfile = dir + "/tokenizer_config.json";
  std::ifstream in(cfile);
  if (!in.good()) return false;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    LLAMAFT_FAIL(cfile, ": not valid JSON (", e.what(), ")");
  }
  if (!j.is_object() || !j.contains("chat_template") || j["chat_template"].is_null()) return false;
  const nlohmann::json& ct = j["chat_template"];
  if (ct.is_string()) {
    *jinja = ct.get<std::string>();
  } else if (ct.is_array()) {  // named templates: [{"name": ..., "template": ...}]; "default" is the chat template
    bool found = false;
    for (const auto& e : ct)
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string()) {
        *jinja = e["template"].get<std::string>();
        found = true;
      }
    LLAMAFT_REQUIRE(found, cfile, ": \"chat_template\" is a list without a \"default\" entry; choose one with --template");
  } else {
    LLAMAFT_FAIL(cfile, ": \"chat_template\" is neither a string nor a list of named templates");
  }
  *where = cfile;
  return true;
}

ChatTemplate resolve_template(const std::string& option, const std::string& dir, const std::string& fallback,
                              const std::string& cmd) {
  if (option != "auto" && option != "model") return named_template(option);
  std::string jinja, where;
  if (find_chat_template(dir, &jinja, &where)) return recognise_chat_template(jinja, where);
  LLAMAFT_REQUIRE(option == "auto", cmd, ": --template model, but ",
                  dir.empty() ? std::string("no model folder was given") : "'" + dir + "' has no chat template "
                  "(chat_template.jinja or \"chat_template\" in tokenizer_config.json)",
                  "; choose one with --template chatml|llama2|llama3|llama3.1|alpaca|none");
  ChatTemplate t = named_template(fallback);
  t.origin = dir.empty() ? "the default" : "the default (no chat template in " + dir + ")";
  return t;
}

std::string alpaca_prompt(const std::string& instruction, const std::string& input) {
  if (input.empty())
    return std::string(kAlpacaPreamble) + "### Instruction:\n" + instruction + "\n\n### Response:\n";
  return "Below is an instruction that describes a task, paired with an input that provides further context. "
         "Write a response that appropriately completes the request.\n\n### Instruction:\n" + instruction +
         "\n\n### Input:\n" + input + "\n\n### Response:\n";
}

Rendered render_alpaca(const Tokenizer& tok, const ChatTemplate& t, const std::string& instruction,
                       const std::string& input, const std::string& output, bool train_on_prompt) {
  if (t.family != TemplateFamily::kNone && t.family != TemplateFamily::kAlpaca) {
    const std::string user = input.empty() ? instruction : instruction + "\n\n" + input;
    return render_chat(tok, t, {{"user", user}, {"assistant", output}}, train_on_prompt);
  }
  Rendered r;
  append(r, {required_bos(tok, t)}, train_on_prompt);
  append_joint(r, tok, alpaca_prompt(instruction, input), output, train_on_prompt);
  append(r, {required_eos(tok, t)}, true);
  return r;
}

namespace {

bool trained_turn(const Message& m, bool train_on_prompt) { return train_on_prompt || m.role == "assistant"; }

// '<|im_start|>' + role + '\n' + content + '<|im_end|>' + '\n' per message.
void chatml_chat(Builder& b, const Tokenizer& tok, const ChatTemplate& t, const std::vector<Message>& messages,
                 bool tp, bool add_generation_prompt) {
  const int32_t start = required_special(tok, "<|im_start|>", t), end = required_special(tok, "<|im_end|>", t);
  if (!t.default_system.empty() && messages[0].role != "system") {
    b.special(start, tp);
    b.text("system\n" + t.default_system, tp);
    b.special(end, tp);
    b.text("\n", tp);
  }
  for (const auto& m : messages) {
    b.special(start, tp);
    b.text(m.role + "\n", tp);
    b.text(m.content, trained_turn(m, tp));
    b.special(end, trained_turn(m, tp));
    b.text("\n", tp);
  }
  if (add_generation_prompt) {
    b.special(start, tp);
    b.text("assistant\n", tp);
  }
}

// Per (user, assistant) pair: <s>[INST] {user} [/INST] {assistant} </s>; a
// system message is folded into the first user turn. The template has no
// generation prompt: a chat ending with a user turn ends with [/INST].
void llama2_chat(Builder& b, const Tokenizer& tok, const ChatTemplate& t, const std::vector<Message>& messages,
                 bool tp) {
  std::vector<Message> msgs = messages;
  if (msgs[0].role == "system") {
    LLAMAFT_REQUIRE(msgs.size() > 1, "llama2: a system message must be followed by a user turn");
    msgs[1].content = "<<SYS>>\n" + msgs[0].content + "\n<</SYS>>\n\n" + msgs[1].content;
    msgs.erase(msgs.begin());
  }
  for (size_t i = 0; i < msgs.size(); ++i) {
    const char* want = i % 2 == 0 ? "user" : "assistant";
    LLAMAFT_REQUIRE(msgs[i].role == want, "llama2 chats alternate user/assistant after an optional system "
                    "message; turn ", i + 1, " is '", msgs[i].role, "'");
    if (i % 2 == 0) {
      b.special(required_bos(tok, t), tp);
      b.text("[INST] " + python_strip(msgs[i].content) + " [/INST]", tp);
    } else {
      b.text(" " + python_strip(msgs[i].content) + " ", true);
      b.special(required_eos(tok, t), true);
    }
  }
}

// Llama 3.1: a system turn always, with the knowledge and today's dates
// before any system message.
void llama31_chat(Builder& b, const Tokenizer& tok, const ChatTemplate& t, const std::vector<Message>& messages,
                  bool tp, bool add_generation_prompt) {
  b.special(required_bos(tok, t), tp);
  size_t first = 0;
  std::string system;
  if (messages[0].role == "system") {
    system = python_strip(messages[0].content);
    first = 1;
  }
  llama3_turn(b, tok, t, "system",
              "Cutting Knowledge Date: December 2023\nToday Date: " + t.date_string + "\n\n" + system, tp, tp);
  for (size_t i = first; i < messages.size(); ++i)
    llama3_turn(b, tok, t, messages[i].role, python_strip(messages[i].content), tp, trained_turn(messages[i], tp));
  if (add_generation_prompt) llama3_generation_prompt(b, tok, t, tp);
}

// Alpaca: a system message (or the preamble), then ### Instruction: and
// ### Response: sections.
void alpaca_chat(Builder& b, const Tokenizer& tok, const ChatTemplate& t, const std::vector<Message>& messages,
                 bool tp, bool add_generation_prompt) {
  b.special(required_bos(tok, t), tp);
  size_t first = 0;
  if (messages[0].role == "system") {
    b.text(messages[0].content + "\n\n", tp);
    first = 1;
  } else {
    b.text(kAlpacaPreamble, tp);
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const Message& m = messages[i];
    LLAMAFT_REQUIRE(m.role != "system", "alpaca chats hold user and assistant turns after an optional system "
                    "message; turn ", i + 1, " is 'system'");
    if (m.role == "user") {
      b.text("### Instruction:\n" + m.content + "\n\n", tp);
    } else {
      b.text("### Response:\n", tp);
      b.text(m.content, true);
      b.special(required_eos(tok, t), true);
      if (i + 1 < messages.size()) b.text("\n\n", tp);
    }
  }
  if (add_generation_prompt) b.text("### Response:\n", tp);
}

}  // namespace

Rendered render_chat(const Tokenizer& tok, const ChatTemplate& t, const std::vector<Message>& messages,
                     bool train_on_prompt, bool add_generation_prompt) {
  require_roles(messages);
  const bool tp = train_on_prompt;
  Builder b(tok);
  switch (t.family) {
    case TemplateFamily::kChatML:
      chatml_chat(b, tok, t, messages, tp, add_generation_prompt);
      break;
    case TemplateFamily::kLlama2:
      llama2_chat(b, tok, t, messages, tp);
      break;
    case TemplateFamily::kLlama3: {
      b.special(required_bos(tok, t), tp);
      for (const auto& m : messages)
        llama3_turn(b, tok, t, m.role, python_strip(m.content), tp, trained_turn(m, tp));
      if (add_generation_prompt || t.always_generation_prompt) llama3_generation_prompt(b, tok, t, tp);
      break;
    }
    case TemplateFamily::kLlama31:
      llama31_chat(b, tok, t, messages, tp, add_generation_prompt);
      break;
    case TemplateFamily::kAlpaca:
      alpaca_chat(b, tok, t, messages, tp, add_generation_prompt);
      break;
    case TemplateFamily::kNone: {
      // No template: the turns' text back to back, assistant turns trained.
      Rendered r;
      append(r, {tok.bos_id()}, tp);
      for (const auto& m : messages) append(r, tok.encode(m.content), trained_turn(m, tp));
      append(r, {tok.eos_id()}, true);
      return r;
    }
  }
  return b.finish();
}

Rendered render_text(const Tokenizer& tok, const std::string& text) {
  Rendered r;
  append(r, {tok.bos_id()}, true);
  append(r, tok.encode(text), true);
  append(r, {tok.eos_id()}, true);
  return r;
}

std::vector<int32_t> end_of_turn_ids(const Tokenizer& tok, const ChatTemplate& t) {
  std::vector<std::string> names;
  switch (t.family) {
    case TemplateFamily::kChatML: names = {"<|im_end|>"}; break;
    case TemplateFamily::kLlama3: names = {"<|eot_id|>"}; break;
    case TemplateFamily::kLlama31: names = {"<|eot_id|>", "<|eom_id|>"}; break;
    default: break;
  }
  std::vector<int32_t> ids;
  for (const auto& n : names)
    if (tok.special_id(n) >= 0) ids.push_back(tok.special_id(n));
  if ((t.family == TemplateFamily::kLlama2 || t.family == TemplateFamily::kAlpaca) && tok.eos_id() >= 0)
    ids.push_back(tok.eos_id());
  return ids;
}

}  // namespace llamaft
