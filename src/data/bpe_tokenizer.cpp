#include "data/bpe_tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"

namespace llamaft {

namespace {

constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// GPT-2's pre-tokenizer regex (tokenizers' ByteLevel with use_regex = true).
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// How a tokenizer.json splits text and merges pieces. kTiktoken: Llama 3
// (its regex; ranks are the ids, the lowest-ranked concatenation merges
// first). kMerges: GPT-2-style byte-level BPE as `tokenizers` runs it (the
// merge list's order decides; optional Digits(individual_digits) split first).
struct BpeScheme {
  bool merges_mode = false;
  std::string pattern = kLlama3Pattern;
  bool split_digits = false;
  bool ignore_merges = false;  // a piece that is a whole token is taken as is
  int32_t unk_id = -1;         // model.unk_token: what a byte outside the vocabulary becomes (-1: dropped)
  std::vector<std::pair<int32_t, int32_t>> merges;  // (left id, right id), in priority order
  std::string bos_name = "<|begin_of_text|>", eos_name = "<|end_of_text|>";
};

pcre2_code* compile_regex(const std::string& pattern) {
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
  LLAMAFT_CHECK(re, "a pre-tokenizer regex did not compile (PCRE2 error ", err, ")");
  pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
  return re;
}

std::string base64_decode(const std::string& in) {
  static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (unsigned char c : in) {
    if (c == '=') break;
    const auto pos = chars.find(c);
    if (pos == std::string::npos) return std::string();
    val = (val << 6) + static_cast<int>(pos);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

// Llama 3.1+ names of the 256 special ids after the ranks.
std::vector<std::string> llama3_special_names() {
  std::vector<std::string> names = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                                    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
                                    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
                                    "<|python_tag|>", "<|image|>"};
  for (int i = 2; names.size() < 256; ++i) names.push_back("<|reserved_special_token_" + std::to_string(i) + "|>");
  return names;
}

class BpeTokenizer final : public Tokenizer {
 public:
  BpeTokenizer(std::vector<std::string> id_to_bytes, std::vector<std::pair<std::string, int32_t>> specials,
               const std::string& what, BpeScheme scheme = {})
      : id_to_bytes_(std::move(id_to_bytes)), scheme_(std::move(scheme)) {
    for (int32_t i = 0; i < static_cast<int32_t>(id_to_bytes_.size()); ++i)
      if (!id_to_bytes_[i].empty()) ranks_.emplace(id_to_bytes_[i], i);
    for (auto& [name, id] : specials) {
      special_[name] = id;
      if (id >= static_cast<int32_t>(special_text_.size())) special_text_.resize(id + 1);
      special_text_[id] = name;
    }
    re_ = compile_regex(scheme_.pattern);
    if (scheme_.split_digits) digit_re_ = compile_regex(R"(\p{N})");
    LLAMAFT_REQUIRE(ranks_.size() > 255, what, ": only ", ranks_.size(), " BPE tokens; not a byte-level BPE tokenizer");
    if (scheme_.merges_mode) {
      // A byte without a token becomes unk_token, or (without one) is
      // dropped, as tokenizers' BPE does (SmolLM2's vocabulary lacks a few
      // control bytes).
      for (int b = 0; b < 256; ++b) {
        auto it = ranks_.find(std::string(1, static_cast<char>(b)));
        byte_id_[b] = it != ranks_.end() ? it->second : scheme_.unk_id;
      }
      for (size_t r = 0; r < scheme_.merges.size(); ++r) {
        const auto [a, b] = scheme_.merges[r];
        auto it = ranks_.find(id_to_bytes_[a] + id_to_bytes_[b]);
        LLAMAFT_REQUIRE(it != ranks_.end(), what, ": merge ", r, " makes a token that is not in the vocabulary");
        merge_rank_.emplace(pair_key(a, b), std::make_pair(static_cast<int32_t>(r), it->second));
      }
    }
  }
  ~BpeTokenizer() override {
    pcre2_code_free(re_);
    if (digit_re_) pcre2_code_free(digit_re_);
  }

  std::vector<int32_t> encode(const std::string& raw) const override {
    const std::string text = sanitize_utf8(raw);
    std::vector<int32_t> out;
    if (!digit_re_) {
      split_and_merge(text, out);
      return out;
    }
    // tokenizers' Digits(individual_digits = true): every \p{N} character is
    // a piece of its own; the text between goes through the regex.
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(digit_re_, nullptr);
    PCRE2_SIZE start = 0;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    while (start < text.size()) {
      const int rc = pcre2_match(digit_re_, subject, text.size(), start, 0, md, nullptr);
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const PCRE2_SIZE begin = rc < 0 ? text.size() : ov[0], end = rc < 0 ? text.size() : ov[1];
      if (begin > start) split_and_merge(text.substr(start, begin - start), out);
      if (rc < 0) break;
      merge(text.substr(begin, end - begin), out);
      start = end;
    }
    pcre2_match_data_free(md);
    return out;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id >= 0 && id < static_cast<int32_t>(id_to_bytes_.size()) && !id_to_bytes_[id].empty()) out += id_to_bytes_[id];
      else if (id >= 0 && id < static_cast<int32_t>(special_text_.size())) out += special_text_[id];
    }
    return out;
  }
  int32_t bos_id() const override { return special_id(scheme_.bos_name); }
  int32_t eos_id() const override { return special_id(scheme_.eos_name); }
  int32_t special_id(const std::string& name) const override {
    auto it = special_.find(name);
    return it == special_.end() ? -1 : it->second;
  }
  int64_t vocab_size() const override { return std::max(id_to_bytes_.size(), special_text_.size()); }
  std::string kind() const override { return scheme_.merges_mode ? "byte-level-bpe" : "tiktoken-bpe"; }

 private:
  // The pre-tokenizer regex over `text`, each piece merged.
  void split_and_merge(const std::string& text, std::vector<int32_t>& out) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(re_, nullptr);
    PCRE2_SIZE start = 0;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    while (start < text.size()) {
      const int rc = pcre2_match(re_, subject, text.size(), start, 0, md, nullptr);
      if (rc < 0) break;  // every byte is covered by the last alternatives
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      if (ov[1] == ov[0]) {  // cannot happen with these patterns; never loop forever
        ++start;
        continue;
      }
      merge(text.substr(ov[0], ov[1] - ov[0]), out);
      start = ov[1];
    }
    pcre2_match_data_free(md);
  }

  void merge(const std::string& piece, std::vector<int32_t>& out) const {
    if (scheme_.merges_mode) bpe_merges(piece, out);
    else bpe(piece, out);
  }

  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  // tokenizers' BPE (Word::merge_all): start from one symbol per byte and
  // apply the adjacent pair earliest in the merge list, leftmost first on a
  // tie, until no pair merges.
  void bpe_merges(const std::string& piece, std::vector<int32_t>& out) const {
    if (scheme_.ignore_merges) {
      auto whole = ranks_.find(piece);
      if (whole != ranks_.end()) {
        out.push_back(whole->second);
        return;
      }
    }
    std::vector<int32_t> syms;
    syms.reserve(piece.size());
    for (char c : piece)
      if (byte_id_[static_cast<unsigned char>(c)] >= 0) syms.push_back(byte_id_[static_cast<unsigned char>(c)]);
    while (syms.size() > 1) {
      size_t best = 0;
      int32_t best_rank = INT32_MAX, best_id = -1;
      for (size_t i = 0; i + 1 < syms.size(); ++i) {
        auto it = merge_rank_.find(pair_key(syms[i], syms[i + 1]));
        if (it != merge_rank_.end() && it->second.first < best_rank)
          best_rank = it->second.first, best_id = it->second.second, best = i;
      }
      if (best_id < 0) break;
      syms[best] = best_id;
      syms.erase(syms.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    }
    out.insert(out.end(), syms.begin(), syms.end());
  }

  // tiktoken's byte-pair merge: repeatedly merge the adjacent pair whose
  // concatenation has the lowest rank.
  void bpe(const std::string& piece, std::vector<int32_t>& out) const {
    auto whole = ranks_.find(piece);
    if (whole != ranks_.end()) {
      out.push_back(whole->second);
      return;
    }
    std::vector<size_t> parts(piece.size() + 1);
    for (size_t i = 0; i <= piece.size(); ++i) parts[i] = i;
    auto rank_of = [&](size_t i) -> int32_t {  // rank of parts[i]..parts[i+2]
      if (i + 2 >= parts.size()) return INT32_MAX;
      auto it = ranks_.find(piece.substr(parts[i], parts[i + 2] - parts[i]));
      return it == ranks_.end() ? INT32_MAX : it->second;
    };
    std::vector<int32_t> ranks(parts.size());
    for (size_t i = 0; i < parts.size(); ++i) ranks[i] = rank_of(i);
    while (parts.size() > 2) {
      size_t best = 0;
      int32_t best_rank = INT32_MAX;
      for (size_t i = 0; i + 2 < parts.size(); ++i)
        if (ranks[i] < best_rank) best_rank = ranks[i], best = i;
      if (best_rank == INT32_MAX) break;
      parts.erase(parts.begin() + best + 1);
      ranks.erase(ranks.begin() + best + 1);
      ranks[best] = rank_of(best);
      if (best > 0) ranks[best - 1] = rank_of(best - 1);
    }
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto it = ranks_.find(piece.substr(parts[i], parts[i + 1] - parts[i]));
      LLAMAFT_CHECK(it != ranks_.end(), "byte not in the BPE ranks");
      out.push_back(it->second);
    }
  }

  std::vector<std::string> id_to_bytes_;
  std::unordered_map<std::string, int32_t> ranks_;
  std::unordered_map<std::string, int32_t> special_;
  std::vector<std::string> special_text_;
  BpeScheme scheme_;
  pcre2_code* re_ = nullptr;
  pcre2_code* digit_re_ = nullptr;
  int32_t byte_id_[256] = {};
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merge_rank_;  // (left, right) -> (rank, merged id)
};

// GPT-2's byte <-> printable-unicode map used by tokenizer.json vocabularies.
std::unordered_map<std::string, unsigned char> unicode_to_byte() {
  std::unordered_map<std::string, unsigned char> map;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const int cp = printable ? b : 256 + n++;
    std::string utf8;
    if (cp < 0x80) utf8 = std::string(1, static_cast<char>(cp));
    else {
      utf8.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      utf8.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    map[utf8] = static_cast<unsigned char>(b);
  }
  return map;
}

// What tokenizer.json's normalizer and pre_tokenizer ask for. GPT-2-style
// byte-level BPE (ByteLevel with use_regex, optionally after
// Digits(individual_digits)) runs by the merge list; anything else keeps the
// Llama 3 reading this loader has always had.
BpeScheme bpe_scheme_of(const nlohmann::json& j, const std::string& path) {
  BpeScheme scheme;
  if (!j.contains("pre_tokenizer") || !j["pre_tokenizer"].is_object()) return scheme;
  std::vector<nlohmann::json> steps;
  const nlohmann::json& pre = j["pre_tokenizer"];
  if (pre.value("type", "") == "Sequence" && pre.contains("pretokenizers")) {
    for (const auto& p : pre["pretokenizers"]) steps.push_back(p);
  } else {
    steps.push_back(pre);
  }
  bool byte_level_regex = false;
  for (const auto& p : steps)
    if (p.value("type", "") == "ByteLevel" && p.value("use_regex", true)) byte_level_regex = true;
  if (!byte_level_regex) return scheme;
  scheme.merges_mode = true;
  scheme.pattern = kGpt2Pattern;
  scheme.ignore_merges = j["model"].value("ignore_merges", false);
  LLAMAFT_REQUIRE(!j.contains("normalizer") || j["normalizer"].is_null(), path,
                  ": a GPT-2-style tokenizer with a normalizer is not supported");
  for (size_t i = 0; i < steps.size(); ++i) {
    const auto& p = steps[i];
    const std::string type = p.value("type", "");
    if (type == "Digits" && p.value("individual_digits", false) && i + 1 < steps.size()) {
      scheme.split_digits = true;
    } else if (type == "ByteLevel" && i + 1 == steps.size()) {
      LLAMAFT_REQUIRE(!p.value("add_prefix_space", false), path,
                      ": ByteLevel with add_prefix_space = true is not supported");
    } else {
      LLAMAFT_FAIL(path, ": pre-tokenizer step ", p.dump(),
                   " is not supported (supported: [Digits(individual_digits=true)], ByteLevel(use_regex=true))");
    }
  }
  return scheme;
}

}  // namespace

std::string sanitize_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  static const char kReplacement[] = "\xEF\xBF\xBD";
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    int len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    if (len == 0) {  // invalid lead byte
      out += kReplacement;
      ++i;
      continue;
    }
    size_t j = 1;
    for (; j < static_cast<size_t>(len) && i + j < n; ++j) {
      const unsigned char cc = p[i + j];
      const unsigned char l = j == 1 ? lo : 0x80, h = j == 1 ? hi : 0xBF;
      if (cc < l || cc > h) break;
    }
    if (j == static_cast<size_t>(len)) {
      out.append(s, i, len);
      i += len;
    } else {  // a truncated or broken sequence: one replacement for the maximal prefix
      out += kReplacement;
      i += j;
    }
  }
  return out;
}

bool looks_like_tiktoken_file(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return false;
  const auto sp = line.find(' ');
  if (sp == std::string::npos || sp == 0) return false;
  for (size_t i = 0; i < sp; ++i)
    if (!(std::isalnum(static_cast<unsigned char>(line[i])) || line[i] == '+' || line[i] == '/' || line[i] == '='))
      return false;
  for (size_t i = sp + 1; i < line.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(line[i]))) return false;
  return true;
}

std::unique_ptr<Tokenizer> load_tiktoken_model(const std::string& path) {
  std::ifstream in(path);
  LLAMAFT_REQUIRE(in.good(), "cannot open tokenizer '", path, "'");
  std::vector<std::string> id_to_bytes;
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    const auto sp = line.find(' ');
    LLAMAFT_REQUIRE(sp != std::string::npos, path, ":", lineno, ": expected 'base64 rank'");
    const std::string bytes = base64_decode(line.substr(0, sp));
    const long rank = std::strtol(line.c_str() + sp + 1, nullptr, 10);
    LLAMAFT_REQUIRE(!bytes.empty() && rank >= 0 && rank < (1 << 24), path, ":", lineno, ": bad token or rank");
    if (rank >= static_cast<long>(id_to_bytes.size())) id_to_bytes.resize(rank + 1);
    id_to_bytes[rank] = bytes;
  }
  const int32_t base = static_cast<int32_t>(id_to_bytes.size());
  std::vector<std::pair<std::string, int32_t>> specials;
  const auto names = llama3_special_names();
  for (int i = 0; i < 256; ++i) specials.emplace_back(names[i], base + i);
  return std::make_unique<BpeTokenizer>(std::move(id_to_bytes), std::move(specials), path);
}

namespace {

using Specials = std::vector<std::pair<std::string, int32_t>>;

// Merges mode: the unk token and model.merges ("a b" strings or [a, b]
// pairs) as pairs of vocabulary ids.
void read_merges(const nlohmann::json& j, const std::string& path,
                 const std::unordered_map<std::string, int32_t>& vocab_ids, const Specials& specials,
                 BpeScheme& full) {
  if (j["model"].contains("unk_token") && j["model"]["unk_token"].is_string()) {
    const std::string unk = j["model"]["unk_token"].get<std::string>();
    auto it = std::find_if(specials.begin(), specials.end(), [&](const auto& sp) { return sp.first == unk; });
    LLAMAFT_REQUIRE(it != specials.end(), path, ": unk_token '", unk, "' is not an added token");
    full.unk_id = it->second;
  }
  LLAMAFT_REQUIRE(j["model"].contains("merges") && j["model"]["merges"].is_array(), path, ": a BPE model without merges");
  for (const auto& m : j["model"]["merges"]) {
    std::string a, b;
    if (m.is_string()) {  // "left right"
      const std::string text = m.get<std::string>();
      const size_t sp = text.find(' ');
      LLAMAFT_REQUIRE(sp != std::string::npos, path, ": merge '", text, "' is not two tokens");
      a = text.substr(0, sp), b = text.substr(sp + 1);
    } else {
      LLAMAFT_REQUIRE(m.is_array() && m.size() == 2, path, ": a merge must be \"a b\" or [a, b]");
      a = m[0].get<std::string>(), b = m[1].get<std::string>();
    }
    auto ia = vocab_ids.find(a), ib = vocab_ids.find(b);
    LLAMAFT_REQUIRE(ia != vocab_ids.end() && ib != vocab_ids.end(), path, ": merge '", a, " ", b,
                    "' names a token not in the vocabulary");
    full.merges.emplace_back(ia->second, ib->second);
  }
}

// bos/eos are not in tokenizer.json; tokenizer_config.json beside it names
// them (a Llama 3 Instruct folder's EOS is <|eot_id|>, its base's
// <|end_of_text|>). Without it, GPT-2-style files have none and Llama 3
// files keep <|begin_of_text|> / <|end_of_text|>.
void read_bos_eos_names(const std::string& path, const Specials& specials, BpeScheme& full) {
  const std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  std::ifstream tc_in(dir + "/tokenizer_config.json");
  if (tc_in.good()) {
    try {
      const nlohmann::json tc = nlohmann::json::parse(tc_in);
      auto name_of = [&](const char* key) -> std::string {
        if (!tc.contains(key)) return "";
        if (tc[key].is_string()) return tc[key].get<std::string>();
        if (tc[key].is_object() && tc[key].contains("content")) return tc[key]["content"].get<std::string>();
        return "";
      };
      if (full.merges_mode) {
        full.bos_name = name_of("bos_token");
        full.eos_name = name_of("eos_token");
      } else {
        auto is_special = [&](const std::string& n) {
          return std::any_of(specials.begin(), specials.end(), [&](const auto& sp) { return sp.first == n; });
        };
        if (is_special(name_of("bos_token"))) full.bos_name = name_of("bos_token");
        if (is_special(name_of("eos_token"))) full.eos_name = name_of("eos_token");
      }
    } catch (const std::exception& e) {
      LLAMAFT_FAIL(dir, "/tokenizer_config.json: not valid JSON (", e.what(), ")");
    }
  }
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& path) {
  std::ifstream in(path);
  LLAMAFT_REQUIRE(in.good(), "cannot open tokenizer '", path, "'");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    LLAMAFT_FAIL(path, ": not valid JSON (", e.what(), ")");
  }
  LLAMAFT_REQUIRE(j.contains("model") && j["model"].value("type", "") == "BPE" && j["model"].contains("vocab"), path,
                  ": only byte-level BPE tokenizer.json files (Llama 3, GPT-2 style) are supported");
  const BpeScheme scheme = bpe_scheme_of(j, path);
  const auto u2b = unicode_to_byte();
  std::vector<std::string> id_to_bytes;
  std::unordered_map<std::string, int32_t> vocab_ids;  // merges mode: the vocabulary's own spelling -> id
  for (auto it = j["model"]["vocab"].begin(); it != j["model"]["vocab"].end(); ++it) {
    if (scheme.merges_mode) vocab_ids[it.key()] = it.value().get<int32_t>();
    const int64_t id = it.value().get<int64_t>();
    std::string bytes;
    const std::string& key = it.key();
    for (size_t i = 0; i < key.size();) {  // one UTF-8 char at a time
      size_t len = (static_cast<unsigned char>(key[i]) < 0x80) ? 1 : (static_cast<unsigned char>(key[i]) < 0xE0 ? 2 : 3);
      auto m = u2b.find(key.substr(i, len));
      LLAMAFT_REQUIRE(m != u2b.end(), path, ": vocabulary entry '", key, "' is not byte-level BPE");
      bytes.push_back(static_cast<char>(m->second));
      i += len;
    }
    if (id >= static_cast<int64_t>(id_to_bytes.size())) id_to_bytes.resize(id + 1);
    id_to_bytes[id] = bytes;
  }
  std::vector<std::pair<std::string, int32_t>> specials;
  if (j.contains("added_tokens"))
    for (const auto& t : j["added_tokens"]) specials.emplace_back(t["content"].get<std::string>(), t["id"].get<int32_t>());
  BpeScheme full = scheme;
  if (full.merges_mode) read_merges(j, path, vocab_ids, specials, full);
  read_bos_eos_names(path, specials, full);
  return std::make_unique<BpeTokenizer>(std::move(id_to_bytes), std::move(specials), path, std::move(full));
}

}  // namespace llamaft
