#include "data/lm_requests.hpp"

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/util.hpp"
#include "data/python_str.hpp"

namespace llamaft {

namespace {

using Json = nlohmann::json;

Json read_json_if_exists(const std::string& path) {
  std::ifstream in(path);
  if (!in.good()) return Json();
  Json j = Json::parse(in, nullptr, false);
  LLAMAFT_REQUIRE(!j.is_discarded(), path, ": not valid JSON");
  return j;
}

// The BOS a tokenizer.json post-processor prepends to one sequence, or -1;
// anything else it would add is refused.
int32_t template_bos(const Json& pp, const std::string& path) {
  if (pp.is_null()) return -1;
  const std::string type = pp.value("type", "");
  if (type == "ByteLevel") return -1;
  if (type == "Sequence") {
    int32_t bos = -1;
    for (const auto& p : pp.value("processors", Json::array())) {
      const int32_t b = template_bos(p, path);
      LLAMAFT_REQUIRE(b < 0 || bos < 0, path, ": two post-processors add special tokens");
      if (b >= 0) bos = b;
    }
    return bos;
  }
  LLAMAFT_REQUIRE(type == "TemplateProcessing", path, ": the post_processor '", type,
                  "' is not supported (ByteLevel, TemplateProcessing)");
  const Json& single = pp["single"];
  LLAMAFT_REQUIRE(single.is_array() && !single.empty() && single.back().contains("Sequence"), path,
                  ": a post_processor template that adds tokens after the text is not supported");
  if (single.size() == 1) return -1;
  LLAMAFT_REQUIRE(single.size() == 2 && single[0].contains("SpecialToken"), path,
                  ": a post_processor template other than [BOS] $A is not supported");
  const std::string name = single[0]["SpecialToken"]["id"].get<std::string>();
  const Json& ids = pp["special_tokens"][name]["ids"];
  LLAMAFT_REQUIRE(ids.is_array() && ids.size() == 1, path, ": the template's special token '", name,
                  "' is not one id");
  return ids[0].get<int32_t>();
}

// Decodes the UTF-8 code point at s[i] (valid UTF-8 assumed: it came from JSON);
// advances i.
uint32_t next_code_point(const std::string& s, size_t& i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return i += 1, c;
  if (c < 0xE0 && i + 1 < s.size()) return i += 2, ((c & 0x1Fu) << 6) | (b(i - 1) & 0x3Fu);
  if (c < 0xF0 && i + 2 < s.size())
    return i += 3, ((c & 0x0Fu) << 12) | ((b(i - 2) & 0x3Fu) << 6) | (b(i - 1) & 0x3Fu);
  if (i + 3 < s.size())
    return i += 4, ((c & 0x07u) << 18) | ((b(i - 3) & 0x3Fu) << 12) | ((b(i - 2) & 0x3Fu) << 6) | (b(i - 1) & 0x3Fu);
  return i += 1, 0xFFFD;
}

// Bytes of s's trailing Python whitespace (what str.rstrip() removes).
size_t trailing_space_bytes(const std::string& s) {
  size_t start = s.size();
  bool in_run = false;
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    if (!is_python_space(next_code_point(s, i))) {
      in_run = false;
    } else if (!in_run) {
      start = at;
      in_run = true;
    }
  }
  return in_run ? s.size() - start : 0;
}

class Encoder {
 public:
  Encoder(const Tokenizer& tok, const HfEncoding& enc) : tok_(tok), enc_(enc) {}
  // tok_encode(text): encode with the default special tokens.
  std::vector<int32_t> encode(const std::string& text, bool special = true) const {
    for (const auto& t : enc_.added_tokens)
      LLAMAFT_REQUIRE(t.empty() || text.find(t) == std::string::npos, "the text '", text.substr(0, 200),
                      "' contains the added token '", t, "'; HF's tokenizer splits it out of the text, which "
                      "llamaft's task reader does not reproduce");
    std::vector<int32_t> ids;
    const bool starts_with_prefix = !enc_.prefix_text.empty() && text.rfind(enc_.prefix_text, 0) == 0;
    if (special && enc_.bos >= 0 && !starts_with_prefix) ids.push_back(enc_.bos);
    const std::vector<int32_t> body = tok_.encode(text);
    ids.insert(ids.end(), body.begin(), body.end());
    return ids;
  }

 private:
  const Tokenizer& tok_;
  const HfEncoding& enc_;
};

// (context_enc, continuation_enc) of one loglikelihood request (api/model.py).
std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(const Encoder& e, const HfEncoding& enc,
                                                                  std::string context, std::string continuation) {
  if (context.empty()) {
    std::vector<int32_t> cont = e.encode(continuation, false);
    LLAMAFT_REQUIRE(!cont.empty(), "the continuation '", continuation, "' encodes to no tokens");
    if (enc.prefix_token != cont[0]) return {{enc.prefix_token}, cont};
    return {{cont[0]}, std::vector<int32_t>(cont.begin() + 1, cont.end())};
  }
  const size_t n_spaces = trailing_space_bytes(context);
  if (n_spaces > 0) {
    continuation = context.substr(context.size() - n_spaces) + continuation;
    context.resize(context.size() - n_spaces);
  }
  const std::vector<int32_t> whole = e.encode(context + continuation);
  const std::vector<int32_t> ctx = e.encode(context);
  const size_t n = std::min(ctx.size(), whole.size());
  return {ctx, std::vector<int32_t>(whole.begin() + static_cast<std::ptrdiff_t>(n), whole.end())};
}

LlRequest make_request(const std::vector<int32_t>& ctx, const std::vector<int32_t>& cont, int max_length,
                       int64_t item, int32_t part) {
  LLAMAFT_REQUIRE(!ctx.empty() && !cont.empty(), "item ", item, " part ", part, ": an empty ",
                  ctx.empty() ? "context" : "continuation",
                  " after tokenization (lm_eval asserts on it too); the choice's text merges into the context");
  LLAMAFT_REQUIRE(static_cast<int>(cont.size()) <= max_length, "item ", item, ": the continuation has ", cont.size(),
                  " tokens, more than max_length ", max_length);
  std::vector<int32_t> all = ctx;
  all.insert(all.end(), cont.begin(), cont.end());
  LlRequest r;
  r.item = item;
  r.part = part;
  const size_t keep = std::min(all.size(), static_cast<size_t>(max_length) + 1);
  r.truncated = keep < all.size();
  r.input.assign(all.end() - static_cast<std::ptrdiff_t>(keep), all.end() - 1);
  r.continuation = cont;
  return r;
}

// utils.get_rolling_token_windows(tokens, prefix, max_len, context_len=1) + make_disjoint_window.
void rolling_requests(const std::vector<int32_t>& t, int32_t prefix, int max_len, int64_t item,
                      std::vector<LlRequest>& out) {
  if (t.empty()) return;
  const int64_t n = static_cast<int64_t>(t.size()), pred_len = max_len;
  const int64_t first = std::min<int64_t>(max_len, n);
  std::vector<int32_t> ctx{prefix};
  ctx.insert(ctx.end(), t.begin(), t.begin() + first - 1);
  std::vector<int32_t> pred(t.begin(), t.begin() + first);
  int32_t part = 0;
  auto add = [&](std::vector<int32_t> input, std::vector<int32_t> p) {
    input.resize(input.size() - (p.size() - 1));  // make_disjoint_window
    out.push_back(make_request(input, p, max_len, item, part++));
  };
  add(ctx, pred);
  for (int64_t predicted = first; predicted < n;) {
    const int64_t len = std::min(n - predicted, pred_len), end = predicted + len;
    add(std::vector<int32_t>(t.begin() + (end - max_len - 1), t.begin() + (end - 1)),
        std::vector<int32_t>(t.begin() + (end - len), t.begin() + end));
    predicted += len;
  }
}

}  // namespace

std::string HfEncoding::describe() const {
  return str_cat(bos >= 0 ? str_cat("BOS ", bos, " prepended") : std::string("no BOS"), ", prefix token ",
                 prefix_token, " '", prefix_text, "'");
}

HfEncoding read_hf_encoding(const std::string& model_dir, const Tokenizer& tok) {
  HfEncoding enc;
  const Json cfg = read_json_if_exists(model_dir + "/tokenizer_config.json");
  const Json tj = read_json_if_exists(model_dir + "/tokenizer.json");
  const std::string cls = cfg.is_object() ? cfg.value("tokenizer_class", "") : "";
  const bool llama_class = cls.rfind("LlamaTokenizer", 0) == 0 || cls.rfind("CodeLlamaTokenizer", 0) == 0;
  const bool sentencepiece = tok.kind() == "sentencepiece";
  auto flag = [&](const char* key, bool dflt) {
    if (!cfg.is_object() || !cfg.contains(key) || cfg[key].is_null()) return dflt;
    LLAMAFT_REQUIRE(cfg[key].is_boolean(), model_dir, "/tokenizer_config.json: '", key, "' must be a boolean");
    return cfg[key].get<bool>();
  };
  if (llama_class || (sentencepiece && !tj.is_object())) {
    // Llama tokenizers take add_bos_token / add_eos_token from the config (defaults: BOS only).
    LLAMAFT_REQUIRE(!flag("add_eos_token", false), model_dir,
                    "/tokenizer_config.json: add_eos_token = true is not supported");
    if (flag("add_bos_token", true)) enc.bos = tok.bos_id();
  } else {
    LLAMAFT_REQUIRE(tj.is_object(), model_dir, ": no tokenizer.json; how HF's tokenizer frames ids is unknown");
    LLAMAFT_REQUIRE(!cfg.is_object() || !cfg.contains("add_bos_token") || cfg["add_bos_token"].is_null(), model_dir,
                    "/tokenizer_config.json: add_bos_token on a ", cls.empty() ? "non-Llama" : cls,
                    " tokenizer is not supported (transformers versions disagree on it)");
    enc.bos = template_bos(tj.contains("post_processor") ? tj["post_processor"] : Json(), model_dir + "/tokenizer.json");
  }
  if (tj.is_object() && tj.contains("added_tokens"))
    for (const auto& t : tj["added_tokens"]) enc.added_tokens.push_back(t.value("content", ""));
  if (sentencepiece && !tj.is_object()) enc.added_tokens = {"<s>", "</s>", "<unk>"};
  enc.prefix_token = tok.bos_id() >= 0 ? tok.bos_id() : tok.eos_id();
  LLAMAFT_REQUIRE(enc.prefix_token >= 0, model_dir, ": the tokenizer has neither a BOS nor an EOS token, which ",
                  "lm_eval needs as the prefix of empty contexts and rolling windows");
  enc.prefix_text = tok.decode({enc.prefix_token});
  return enc;
}

std::vector<LlRequest> build_requests(const LmTask& task, const Tokenizer& tok, const HfEncoding& enc,
                                      int max_length) {
  const Encoder e(tok, enc);
  std::vector<LlRequest> out;
  for (size_t i = 0; i < task.items.size(); ++i) {
    const TaskItem& it = task.items[i];
    if (task.output == TaskOutput::kRolling) {
      rolling_requests(e.encode(it.text), enc.prefix_token, max_length, static_cast<int64_t>(i), out);
      continue;
    }
    for (size_t c = 0; c < it.choices.size(); ++c) {
      const auto [ctx, cont] = encode_pair(e, enc, it.context, task.target_delimiter + it.choices[c]);
      out.push_back(make_request(ctx, cont, max_length, static_cast<int64_t>(i), static_cast<int32_t>(c)));
    }
  }
  return out;
}

int64_t python_word_count(const std::string& s) {
  int64_t n = 1;
  bool in_space = false;
  for (size_t i = 0; i < s.size();) {
    const bool space = is_python_space(next_code_point(s, i));
    if (space && !in_space) ++n;
    in_space = space;
  }
  return n;
}

int64_t utf8_code_points(const std::string& s) {
  int64_t n = 0;
  for (size_t i = 0; i < s.size(); next_code_point(s, i)) ++n;
  return n;
}

}  // namespace llamaft
