#include "train/sample_prompts.hpp"

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "data/templates.hpp"
#include "data/token_ids.hpp"

namespace llamaft {

bool is_token_id_list(const std::string& value) {
  bool digit = false;
  for (const char c : value) {
    if (c >= '0' && c <= '9') digit = true;
    else if (c != ',' && c != ';' && c != ' ' && c != '\t' && c != '\n') return false;
  }
  return digit;
}

std::vector<std::string> split_text_prompts(const std::string& value) {
  std::vector<std::string> out;
  const size_t first = value.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && value[first] == '[') {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(value);
    } catch (const std::exception& e) {
      LLAMAFT_FAIL("train.sample_prompts: starts with '[' but is not a JSON list of strings: ", e.what());
    }
    LLAMAFT_REQUIRE(j.is_array() && !j.empty(), "train.sample_prompts: a JSON value must be a non-empty list of strings");
    for (const auto& v : j) {
      LLAMAFT_REQUIRE(v.is_string() && !v.get<std::string>().empty(),
                      "train.sample_prompts: every item of the JSON list must be a non-empty string");
      out.push_back(v.get<std::string>());
    }
    return out;
  }
  std::string cur;
  auto flush = [&] {
    const size_t b = cur.find_first_not_of(" \t\r\n"), e = cur.find_last_not_of(" \t\r\n");
    LLAMAFT_REQUIRE(b != std::string::npos, "train.sample_prompts: an empty prompt in '", value, "'");
    out.push_back(cur.substr(b, e - b + 1));
    cur.clear();
  };
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\\' && i + 1 < value.size() && value[i + 1] == ';') {
      cur += ';';
      ++i;
    } else if (value[i] == ';') {
      flush();
    } else {
      cur += value[i];
    }
  }
  flush();
  return out;
}

std::string decode_sample(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::string out;
  std::vector<int32_t> run;
  for (const int32_t id : ids) {
    if (id >= 0 && id < tok.vocab_size()) {
      run.push_back(id);
      continue;
    }
    out += tok.decode(run) + "[" + std::to_string(id) + "]";
    run.clear();
  }
  return out + tok.decode(run);
}

SamplePrompts build_sample_prompts(const std::string& value, const std::string& template_option,
                                   const std::string& model_dir, const std::string& tokenizer_path,
                                   const LlamaConfig& mc) {
  SamplePrompts p;
  if (value.empty()) return p;
  if (is_token_id_list(value)) {
    p.ids = parse_token_id_lists(value, mc.vocab_size, "train.sample_prompts");
    p.texts.assign(p.ids.size(), "");
    p.tokenizer = load_tokenizer(tokenizer_path, model_dir);  // for decoding, when there is one
    return p;
  }
  p.texts = split_text_prompts(value);
  p.tokenizer = load_tokenizer(tokenizer_path, model_dir);
  LLAMAFT_REQUIRE(p.tokenizer, "train.sample_prompts is text, but '", model_dir, "' has no tokenizer (tokenizer.model "
                  "or tokenizer.json); set model.tokenizer, or give the prompts as token ids ('1,12,13;1,15,16')");
  LLAMAFT_REQUIRE(p.tokenizer->vocab_size() <= mc.vocab_size, "train.sample_prompts: the tokenizer's vocabulary (",
                  p.tokenizer->vocab_size(), ") is larger than the model's (", mc.vocab_size, ")");
  const std::string tmpl_dir = tokenizer_path.empty() ? model_dir
                               : tokenizer_path.find('/') == std::string::npos
                                   ? "."
                                   : tokenizer_path.substr(0, tokenizer_path.rfind('/'));
  const ChatTemplate tmpl = resolve_template(template_option, tmpl_dir, "none", "train.sample_prompts");
  p.template_desc = tmpl.describe();
  for (const auto& text : p.texts) {
    std::vector<int32_t> ids;
    if (tmpl.family == TemplateFamily::kNone) {
      ids = p.tokenizer->encode(text);
      ids.insert(ids.begin(), static_cast<int32_t>(mc.bos_token_id));
    } else {
      ids = render_chat(*p.tokenizer, tmpl, {{"user", text}}, true, /*add_generation_prompt=*/true).ids;
    }
    p.ids.push_back(std::move(ids));
  }
  return p;
}

}  // namespace llamaft
