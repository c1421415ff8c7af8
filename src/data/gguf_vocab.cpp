// Tokenizer files -> GGUF tokenizer metadata; see gguf_vocab.hpp. The rules
// follow llama.cpp's convert_hf_to_gguf.py (_set_vocab_sentencepiece,
// _set_vocab_gpt2, get_vocab_base) and gguf-py's SpecialVocab, read as a
// specification and written here from scratch; the tests compare the result
// with files those tools wrote.
#include "data/gguf_vocab.hpp"

#include <sentencepiece_processor.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "core/error.hpp"
#include "data/bpe_tokenizer.hpp"

namespace llamaft {

namespace {

using json = nlohmann::json;

// llama_token_type (llama.h), the values of tokenizer.ggml.token_type.
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// Llama 3's pre-tokenizer regex (its tokenizer.json Split pattern, and the
// pattern llama.cpp's `llama-bpe` pre-tokenizer implements).
constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LLAMAFT_REQUIRE(in.good(), "cannot open '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json read_json(const std::string& path) {
  try {
    return json::parse(read_text(path));
  } catch (const json::exception& e) {
    LLAMAFT_FAIL(path, ": not valid JSON (", e.what(), ")");
  }
}

// Python truthiness of a JSON value read from a tokenizer file.
bool truthy(const json& v) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_string() || v.is_array() || v.is_object()) return !v.empty();
  if (v.is_number()) return v.get<double>() != 0;
  return true;
}
json get_or_null(const json& obj, const std::string& key) {
  return obj.is_object() && obj.contains(key) ? obj[key] : json();
}
// x.get('SpecialToken', {}).get('id') and friends.
json nested_id(const json& item, const char* kind) { return get_or_null(get_or_null(item, kind), "id"); }

// convert_hf_to_gguf.py's does_token_look_special.
bool looks_special(const std::string& t) {
  auto starts = [&](const std::string& p) { return t.size() >= p.size() && t.compare(0, p.size(), p) == 0; };
  auto ends = [&](const std::string& s) { return t.size() >= s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0; };
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (starts("<|") && ends("|>")) return true;
  if (starts("<\xef\xbd\x9c") && ends("\xef\xbd\x9c>")) return true;  // <｜ ... ｜> (deepseek-coder)
  return starts("<unused") && ends(">");
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}
const char* const kSpmSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's space

// GPT-2's byte -> printable unicode map (bytes_to_unicode), as UTF-8.
std::vector<std::string> byte_to_unicode() {
  std::vector<int> bs, cs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  cs = bs;
  int n = 0;
  for (int b = 0; b < 256; ++b)
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) bs.push_back(b), cs.push_back(256 + n++);
  std::vector<std::string> out(256);
  for (size_t i = 0; i < bs.size(); ++i) {
    const int c = cs[i];
    std::string u;
    if (c < 0x80) u.push_back(static_cast<char>(c));
    else u.push_back(static_cast<char>(0xC0 | (c >> 6))), u.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    out[static_cast<size_t>(bs[i])] = u;
  }
  return out;
}

std::string base64_decode(const std::string& in, const std::string& what) {
  static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (unsigned char c : in) {
    if (c == '=') break;
    const auto pos = chars.find(static_cast<char>(c));
    LLAMAFT_REQUIRE(pos != std::string::npos, what, ": not base64");
    val = ((val << 6) + static_cast<int>(pos)) & 0xFFFFFF;
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

// An insertion-ordered dict, as Python's.
template <typename V>
struct Ordered {
  std::vector<std::pair<std::string, V>> items;
  V* find(const std::string& k) {
    for (auto& kv : items)
      if (kv.first == k) return &kv.second;
    return nullptr;
  }
  void set(const std::string& k, V v) {
    if (V* p = find(k)) *p = v;
    else items.emplace_back(k, v);
  }
  void setdefault(const std::string& k, V v) {
    if (!find(k)) items.emplace_back(k, v);
  }
};

// gguf-py's SpecialVocab over one folder: special token ids, add_* flags
// and the chat template, from tokenizer.json's post-processor,
// tokenizer_config.json (+ chat_template.jinja/.json) and config.json.
struct SpecialVocab {
  std::vector<std::string> types = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
  Ordered<int64_t> ids;
  Ordered<bool> add;
  bool has_template = false;
  std::string chat_template;
  int64_t n_vocab = 0;

  std::vector<std::string>* notes = nullptr;

  void set_id(const std::string& type, const json& tid, const std::string& where) {
    if (!tid.is_number_integer()) return;
    const int64_t id = tid.get<int64_t>();
    LLAMAFT_REQUIRE(id >= 0, where, ": ", type, " token id ", id, " is negative");
    if (id >= n_vocab) {  // gguf-py skips it, with a warning
      notes->push_back(where + ": " + type + " token id " + std::to_string(id) + " is not below the vocab_size " +
                       std::to_string(n_vocab) + "; not written");
      return;
    }
    if (!ids.find(type)) ids.set(type, id);
  }

  void load(const std::string& tok_dir, const std::string& model_dir) {
    const std::string tj_path = tok_dir + "/tokenizer.json", tc_path = tok_dir + "/tokenizer_config.json";
    const json tokenizer = is_file(tj_path) ? read_json(tj_path) : json();
    json tc = is_file(tc_path) ? read_json(tc_path) : json();
    const json added = truthy(tokenizer) ? get_or_null(tokenizer, "added_tokens") : json::array();
    if (truthy(tokenizer)) from_post_processor(tokenizer, tc, tj_path);
    if (truthy(tc)) from_tokenizer_config(tc, added, tok_dir, tc_path);
    const std::string cfg_path = model_dir + "/config.json";
    if (is_file(cfg_path)) {
      const json cfg = read_json(cfg_path);
      for (const auto& t : types) set_id(t, get_or_null(cfg, t + "_token_id"), cfg_path);
    }
  }

  void from_post_processor(const json& tokenizer, json& tc, const std::string& where) {
    json special_bos = get_or_null(tc, "bos_token"), special_cls = get_or_null(tc, "cls_token");
    json special_eos = get_or_null(tc, "eos_token"), special_sep = get_or_null(tc, "sep_token");
    const bool have_tc = truthy(tc);
    if (!truthy(special_bos) && truthy(special_cls) && have_tc) tc["bos_token"] = special_bos = special_cls;
    if (!truthy(special_eos) && truthy(special_sep) && have_tc) tc["eos_token"] = special_eos = special_sep;
    const json post = get_or_null(tokenizer, "post_processor");
    if (!truthy(post)) return;
    const json processors = post.contains("processors") ? post["processors"] : json::array({post});
    for (const json& p : processors) {
      const std::string type = get_or_null(p, "type").is_string() ? p["type"].get<std::string>() : "";
      if (type == "ByteLevel") {
        add.setdefault("bos", false);
        add.setdefault("eos", false);
        continue;
      }
      LLAMAFT_REQUIRE(type != "RobertaProcessing" && type != "BertProcessing", where, ": post-processor ", type,
                      " belongs to an encoder tokenizer, not a Llama's; export refuses to guess its GGUF flags");
      if (type != "TemplateProcessing") continue;  // gguf-py reads nothing else either
      const json single = get_or_null(p, "single").is_array() ? p["single"] : json::array();
      json pair = get_or_null(p, "pair").is_array() ? p["pair"] : json::array();
      json first, last;
      if (single.size() > 1) {
        first = nested_id(single.front(), "SpecialToken");
        if (truthy(first)) {
          if (!have_tc) {
            special_bos = first;
          } else if (first != special_bos && first != special_cls) {
            if (!truthy(special_bos)) tc["bos_token"] = special_bos = first;
            if (!truthy(special_cls)) tc["cls_token"] = special_cls = first;
          }
          add.set("bos", first == special_bos || first == special_cls);
        }
        last = nested_id(single.back(), "SpecialToken");
        if (truthy(last)) {
          if (!have_tc) {
            special_eos = last;
          } else if (last != special_eos) {
            if (std::find(types.begin(), types.end(), "eot") == types.end()) {
              types.push_back("eot");
              tc["eot_token"] = special_eos;
            } else if (std::find(types.begin(), types.end(), "eom") == types.end()) {
              types.push_back("eom");
              tc["eom_token"] = special_eos;
            }
            tc["eos_token"] = special_eos = last;
          }
          add.set("eos", last == special_eos);
        }
      }
      if (pair.empty()) continue;
      const size_t start = truthy(first) && nested_id(pair.front(), "SpecialToken") == first ? 1 : 0;
      const size_t stop = truthy(last) && nested_id(pair.back(), "SpecialToken") == last ? pair.size() - 1 : pair.size();
      json mid = json::array();
      for (size_t i = start; i < stop; ++i) mid.push_back(pair[i]);
      if (mid.empty()) continue;
      const json a = nested_id(mid.front(), "Sequence"), b = nested_id(mid.back(), "Sequence");
      if (!(a == "A" && b == "B") || mid.size() <= 2) continue;
      json inner = json::array();
      for (size_t i = 1; i + 1 < mid.size(); ++i) inner.push_back(mid[i]);
      bool add_sep = false;
      const json e0 = nested_id(inner[0], "SpecialToken");
      if (truthy(e0) && (e0 == special_sep || e0 == special_eos) && !truthy(last)) add_sep = true;
      if (inner.size() == 2) {
        const json e1 = nested_id(inner[1], "SpecialToken");
        if (truthy(e1) && (e1 == special_sep || e1 == special_eos)) add_sep = true;
      }
      add.set("sep", add_sep);
      if (add_sep && !truthy(special_sep) && have_tc) tc["sep_token"] = special_eos;
    }
  }

  void from_tokenizer_config(const json& tc, const json& added, const std::string& tok_dir, const std::string& where) {
    json alt;
    const std::string jinja = tok_dir + "/chat_template.jinja", cjson = tok_dir + "/chat_template.json";
    if (is_file(jinja)) {
      LLAMAFT_REQUIRE(!is_dir(tok_dir + "/additional_chat_templates"), tok_dir,
                      ": additional_chat_templates/ (several named chat templates) is not supported by export");
      alt = read_text(jinja);
    } else if (is_file(cjson)) {
      alt = get_or_null(read_json(cjson), "chat_template");
    }
    const json tmpl = tc.contains("chat_template") ? tc["chat_template"] : alt;
    LLAMAFT_REQUIRE(tmpl.is_null() || tmpl.is_string(), where,
                    ": chat_template is a list of named templates, which export does not write");
    if (tmpl.is_string()) has_template = true, chat_template = tmpl.get<std::string>();
    for (const auto& t : types) {
      const json add_entry = get_or_null(tc, "add_" + t + "_token");
      if (add_entry.is_boolean() && !add.find(t)) add.set(t, add_entry.get<bool>());
      const json entry = get_or_null(tc, t + "_token");
      json content;
      if (entry.is_string()) content = entry;
      else if (entry.is_object() && get_or_null(entry, "content").is_string()) content = entry["content"];
      else continue;
      json id;
      if (added.is_array())
        for (const auto& atok : added)
          if (get_or_null(atok, "content") == content) {
            id = get_or_null(atok, "id");
            break;
          }
      set_id(t, id, where);
    }
  }
};

// The folder and file to read: `path` is a file, a folder, or "" (model_dir).
struct TokenizerSource {
  std::string dir, file;  // file: tokenizer.model or tokenizer.json
};

TokenizerSource locate(const std::string& path, const std::string& model_dir) {
  const std::string where = path.empty() ? model_dir : path;
  if (is_file(where)) {
    const size_t slash = where.rfind('/');
    return {slash == std::string::npos ? "." : where.substr(0, slash), where};
  }
  LLAMAFT_REQUIRE(is_dir(where), "tokenizer '", where, "' does not exist");
  for (const char* name : {"/tokenizer.model", "/tokenizer.json"})
    if (is_file(where + name)) return {where, where + name};
  LLAMAFT_FAIL("no tokenizer.model or tokenizer.json in '", where, "'",
               path.empty() ? "; a model written by merge or train holds none: pass --tokenizer with the base model's "
                              "folder (or set model.tokenizer)"
                            : "");
}

void check_size(int64_t tokenizer_ids, int64_t vocab_size, const std::string& what) {
  LLAMAFT_REQUIRE(tokenizer_ids <= vocab_size, what, " has ", tokenizer_ids,
                  " tokens but the model's vocab_size is ", vocab_size,
                  "; the model cannot be given ids it has no embedding for (is this the model's tokenizer?)");
}

// _create_vocab_sentencepiece.
void sentencepiece_vocab(const TokenizerSource& src, int64_t vocab_size, GgufVocab& v) {
  sentencepiece::SentencePieceProcessor sp;
  const auto status = sp.Load(src.file);
  LLAMAFT_REQUIRE(status.ok(), "cannot load SentencePiece tokenizer '", src.file, "': ", status.ToString());
  const int n = sp.GetPieceSize();
  check_size(n, vocab_size, src.file);
  v.model = "llama";
  v.pre = "default";
  v.tokens.resize(static_cast<size_t>(vocab_size));
  for (int64_t i = 0; i < vocab_size; ++i) v.tokens[i] = "[PAD" + std::to_string(i) + "]";
  v.scores.assign(static_cast<size_t>(vocab_size), -10000.f);
  v.token_types.assign(static_cast<size_t>(vocab_size), kUnused);
  for (int id = 0; id < n; ++id) {
    v.tokens[id] = sp.IdToPiece(id);
    v.scores[id] = sp.GetScore(id);
    v.token_types[id] = sp.IsUnknown(id) ? kUnknown : sp.IsControl(id) ? kControl : sp.IsUnused(id) ? kUnused
                      : sp.IsByte(id) ? kByte : kNormal;
  }
  const std::string added_path = src.dir + "/added_tokens.json";
  if (is_file(added_path)) {
    const json added = read_json(added_path);
    LLAMAFT_REQUIRE(added.is_object(), added_path, ": expected an object of token -> id");
    for (auto it = added.begin(); it != added.end(); ++it) {
      LLAMAFT_REQUIRE(it.value().is_number_integer(), added_path, ": the id of '", it.key(), "' is not an integer");
      const int64_t id = it.value().get<int64_t>();
      LLAMAFT_REQUIRE(id >= 0 && id < vocab_size, added_path, ": token '", it.key(), "' has id ", id,
                      ", outside the model's vocab_size ", vocab_size);
      v.tokens[id] = it.key();
      v.scores[id] = -1000.f;
      v.token_types[id] = kUserDefined;
    }
  }
  const std::string tc_path = src.dir + "/tokenizer_config.json";
  if (is_file(tc_path)) {
    const json tc = read_json(tc_path);
    const json decoder = get_or_null(tc, "added_tokens_decoder");
    if (decoder.is_object())
      for (auto it = decoder.begin(); it != decoder.end(); ++it) {
        int64_t id = -1;
        try {
          id = std::stoll(it.key());
        } catch (const std::exception&) {
        }
        LLAMAFT_REQUIRE(id >= 0 && get_or_null(it.value(), "content").is_string(), tc_path,
                        ": added_tokens_decoder entry '", it.key(), "' has no token id and content");
        if (id >= vocab_size) {  // the converter skips it, with a warning
          v.notes.push_back(tc_path + ": added token " + std::to_string(id) + " is beyond the vocab_size " +
                            std::to_string(vocab_size) + "; not written");
          continue;
        }
        std::string token = it.value()["content"].get<std::string>();
        if (truthy(get_or_null(it.value(), "special")) || looks_special(token)) {
          v.token_types[id] = kControl;
        } else {
          token = replace_all(token, kSpmSpace, " ");  // pre-normalise user-defined spaces
          v.token_types[id] = kUserDefined;
        }
        v.scores[id] = -1000.f;
        v.tokens[id] = token;
      }
  }
  v.source = src.file + " (SentencePiece, " + std::to_string(n) + " pieces)";
}

// Which llama.cpp pre-tokenizer a tokenizer.json's pre_tokenizer is.
std::string pre_tokenizer_name(const json& tj, const std::string& where) {
  const json pre = get_or_null(tj, "pre_tokenizer");
  auto is_byte_level = [](const json& p, bool use_regex) {
    return get_or_null(p, "type") == "ByteLevel" && !truthy(get_or_null(p, "add_prefix_space")) &&
           get_or_null(p, "use_regex") == use_regex;
  };
  const json seq = get_or_null(pre, "type") == "Sequence" ? get_or_null(pre, "pretokenizers") : json();
  if (is_byte_level(pre, true)) return "gpt-2";
  if (seq.is_array() && seq.size() == 2) {
    if (get_or_null(seq[0], "type") == "Digits" && get_or_null(seq[0], "individual_digits") == true &&
        is_byte_level(seq[1], true))
      return "smollm";
    const json split = seq[0];
    if (get_or_null(split, "type") == "Split" && get_or_null(get_or_null(split, "pattern"), "Regex") == kLlama3Regex &&
        get_or_null(split, "behavior") == "Isolated" && get_or_null(split, "invert") == false &&
        is_byte_level(seq[1], false)) {
      LLAMAFT_REQUIRE(get_or_null(get_or_null(tj, "model"), "ignore_merges") == true, where,
                      ": Llama 3's pre-tokenizer without model.ignore_merges = true; llama.cpp's llama-bpe "
                      "tokenizes with ignore_merges, so the GGUF would not tokenize as this file does");
      return "llama-bpe";
    }
  }
  LLAMAFT_FAIL(where, ": its pre_tokenizer (", pre.dump().substr(0, 300),
               ") is none of the llama.cpp pre-tokenizers export names: llama-bpe (Llama 3's split regex), "
               "smollm (individual digits, then GPT-2's byte-level regex) or gpt-2 (GPT-2's byte-level regex)");
}

// get_vocab_base + _set_vocab_gpt2 over a tokenizer.json.
void tokenizer_json_vocab(const TokenizerSource& src, int64_t vocab_size, GgufVocab& v) {
  const json tj = read_json(src.file);
  const json model = get_or_null(tj, "model");
  LLAMAFT_REQUIRE(get_or_null(model, "type") == "BPE" && get_or_null(model, "vocab").is_object(), src.file,
                  ": tokenizer.json model type ", get_or_null(model, "type").dump(),
                  " is not a byte-level BPE; export writes SentencePiece tokenizers from tokenizer.model and "
                  "byte-level BPE ones from tokenizer.json");
  LLAMAFT_REQUIRE(!truthy(get_or_null(model, "byte_fallback")), src.file,
                  ": a BPE with byte_fallback (a SentencePiece-style tokenizer.json); export needs its tokenizer.model");
  LLAMAFT_REQUIRE(get_or_null(tj, "normalizer").is_null(), src.file, ": its normalizer (",
                  get_or_null(tj, "normalizer").dump().substr(0, 200),
                  ") has no equivalent in llama.cpp's byte-level BPE; refusing to write a GGUF that tokenizes differently");
  LLAMAFT_REQUIRE(get_or_null(get_or_null(tj, "decoder"), "type") == "ByteLevel", src.file,
                  ": the decoder is not ByteLevel; llama.cpp decodes gpt2 vocabularies byte-level");
  v.model = "gpt2";
  v.pre = pre_tokenizer_name(tj, src.file);
  std::unordered_map<int64_t, std::string> reverse;
  int64_t max_id = -1;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    LLAMAFT_REQUIRE(it.value().is_number_integer(), src.file, ": vocabulary entry '", it.key(), "' has no integer id");
    const int64_t id = it.value().get<int64_t>();
    reverse[id] = it.key();
    max_id = std::max(max_id, id);
  }
  // Added tokens: get_vocab() holds them too; their flags decide the type.
  std::unordered_map<int64_t, json> added_by_id;
  std::unordered_map<std::string, int64_t> added_content;
  const json added = get_or_null(tj, "added_tokens");
  if (added.is_array())
    for (const auto& a : added) {
      LLAMAFT_REQUIRE(get_or_null(a, "id").is_number_integer() && get_or_null(a, "content").is_string(), src.file,
                      ": an added token without an integer id and a content");
      const int64_t id = a["id"].get<int64_t>();
      reverse[id] = a["content"].get<std::string>();
      added_by_id[id] = a;
      added_content.emplace(a["content"].get<std::string>(), id);
      max_id = std::max(max_id, id);
    }
  check_size(max_id + 1, vocab_size, src.file);
  v.tokens.resize(static_cast<size_t>(vocab_size));
  v.token_types.assign(static_cast<size_t>(vocab_size), kNormal);
  for (int64_t i = 0; i < vocab_size; ++i) {
    auto r = reverse.find(i);
    if (r == reverse.end()) {
      v.tokens[i] = "[PAD" + std::to_string(i) + "]";
      v.token_types[i] = kUnused;
      continue;
    }
    std::string token = r->second;
    auto ac = added_content.find(token);
    if (ac != added_content.end()) {
      const json& entry = added_by_id.count(i) ? added_by_id[i] : added_by_id[ac->second];
      if (truthy(get_or_null(entry, "special")) || looks_special(token)) {
        v.token_types[i] = kControl;
      } else {
        token = replace_all(token, kSpmSpace, " ");
        v.token_types[i] = kUserDefined;
      }
    }
    v.tokens[i] = token;
  }
  const json merges = get_or_null(model, "merges");
  LLAMAFT_REQUIRE(merges.is_array() && !merges.empty(), src.file, ": a BPE model without merges");
  v.merges.reserve(merges.size());
  const std::string space_escape = "\xc4\xa0";  // chr(ord(' ') + 256): spaces inside a pair's parts
  for (const auto& m : merges) {
    if (m.is_string()) {
      v.merges.push_back(m.get<std::string>());
      continue;
    }
    LLAMAFT_REQUIRE(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), src.file,
                    ": a merge must be \"a b\" or [a, b]");
    v.merges.push_back(replace_all(m[0].get<std::string>(), " ", space_escape) + " " +
                       replace_all(m[1].get<std::string>(), " ", space_escape));
  }
  v.source = src.file + " (byte-level BPE, pre-tokenizer " + v.pre + ", " + std::to_string(reverse.size()) +
             " tokens, " + std::to_string(v.merges.size()) + " merges)";
}

// Llama 3's tiktoken ranks (tokenizer.model) as transformers' TikTokenConverter
// makes a tokenizer.json of it: tokens are the rank bytes through GPT-2's byte
// map, the 256 special tokens follow (llamaft's Llama 3.1+ names), and the
// merges are every split of each token into two tokens, in rank order, ties by
// the ranks of the two halves.
void tiktoken_vocab(const TokenizerSource& src, int64_t vocab_size, GgufVocab& v) {
  std::ifstream in(src.file);
  LLAMAFT_REQUIRE(in.good(), "cannot open '", src.file, "'");
  std::vector<std::string> by_rank;
  std::unordered_map<std::string, int64_t> rank_of;
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    const size_t sp = line.find(' ');
    const std::string where = src.file + ":" + std::to_string(lineno);
    LLAMAFT_REQUIRE(sp != std::string::npos, where, ": expected 'base64 rank'");
    const std::string bytes = base64_decode(line.substr(0, sp), where);
    const int64_t rank = std::strtoll(line.c_str() + sp + 1, nullptr, 10);
    LLAMAFT_REQUIRE(!bytes.empty() && rank == static_cast<int64_t>(by_rank.size()) && !rank_of.count(bytes), where,
                    ": ranks must run 0, 1, 2, ... over distinct tokens");
    by_rank.push_back(bytes);
    rank_of[bytes] = rank;
  }
  const int64_t base = static_cast<int64_t>(by_rank.size());
  std::unique_ptr<Tokenizer> tok = load_tiktoken_model(src.file);  // llamaft's own reading: the special names
  const int64_t n = tok->vocab_size();
  check_size(n, vocab_size, src.file);
  const std::vector<std::string> b2u = byte_to_unicode();
  auto to_unicode = [&](const std::string& bytes) {
    std::string s;
    for (unsigned char c : bytes) s += b2u[c];
    return s;
  };
  v.model = "gpt2";
  v.pre = "llama-bpe";
  v.tokens.resize(static_cast<size_t>(vocab_size));
  v.token_types.assign(static_cast<size_t>(vocab_size), kNormal);
  for (int64_t i = 0; i < vocab_size; ++i) {
    if (i < base) {
      v.tokens[i] = to_unicode(by_rank[i]);
    } else if (i < n) {
      v.tokens[i] = tok->decode({static_cast<int32_t>(i)});
      v.token_types[i] = kControl;
    } else {
      v.tokens[i] = "[PAD" + std::to_string(i) + "]";
      v.token_types[i] = kUnused;
    }
  }
  for (int64_t r = 0; r < base; ++r) {
    const std::string& t = by_rank[r];
    std::vector<std::pair<int64_t, int64_t>> local;
    for (size_t k = 1; k < t.size(); ++k) {
      auto l = rank_of.find(t.substr(0, k)), rr = rank_of.find(t.substr(k));
      if (l != rank_of.end() && rr != rank_of.end()) local.emplace_back(l->second, rr->second);
    }
    std::stable_sort(local.begin(), local.end());
    for (const auto& [a, b] : local) v.merges.push_back(to_unicode(by_rank[a]) + " " + to_unicode(by_rank[b]));
  }
  v.source = src.file + " (Llama 3 tiktoken ranks, " + std::to_string(base) + " tokens + " +
             std::to_string(n - base) + " special, " + std::to_string(v.merges.size()) + " merges)";
}

}  // namespace

std::string gguf_special_id_key(const std::string& type) {
  static const std::pair<const char*, const char*> kKeys[] = {
      {"bos", "tokenizer.ggml.bos_token_id"},     {"eos", "tokenizer.ggml.eos_token_id"},
      {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},
      {"pad", "tokenizer.ggml.padding_token_id"}, {"mask", "tokenizer.ggml.mask_token_id"},
      {"eot", "tokenizer.ggml.eot_token_id"},     {"eom", "tokenizer.ggml.eom_token_id"}};
  for (const auto& [t, k] : kKeys)
    if (type == t) return k;
  return "";
}

GgufVocab gguf_vocab_from_files(const std::string& tokenizer_path, const std::string& model_dir, int64_t vocab_size) {
  const TokenizerSource src = locate(tokenizer_path, model_dir);
  GgufVocab v;
  const bool is_json = src.file.size() >= 5 && src.file.compare(src.file.size() - 5, 5, ".json") == 0;
  const bool tiktoken = !is_json && looks_like_tiktoken_file(src.file);
  if (is_json) tokenizer_json_vocab(src, vocab_size, v);
  else if (tiktoken) tiktoken_vocab(src, vocab_size, v);
  else sentencepiece_vocab(src, vocab_size, v);

  const std::string tc_path = src.dir + "/tokenizer_config.json";
  if (is_file(tc_path)) {  // LlamaModel.set_vocab: add_prefix_space, when the config says
    const json pfx = get_or_null(read_json(tc_path), "add_prefix_space");
    if (pfx.is_boolean()) v.add_space_prefix = pfx.get<bool>() ? 1 : 0;
  }
  SpecialVocab special;
  special.n_vocab = vocab_size;
  special.notes = &v.notes;
  special.load(src.dir, model_dir);
  if (tiktoken) special.add.setdefault("bos", true);  // Llama 3 prepends <|begin_of_text|>
  for (const auto& [type, id] : special.ids.items)
    if (!gguf_special_id_key(type).empty()) v.special_ids.emplace_back(type, id);
  for (const auto& [type, value] : special.add.items)
    if (type == "bos" || type == "eos" || type == "sep") v.add_special.emplace_back(type, value);
  v.has_chat_template = special.has_template;
  v.chat_template = special.chat_template;
  return v;
}

}  // namespace llamaft
