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
               const std::string& what)
      : id_to_bytes_(std::move(id_to_bytes)) {
    for (int32_t i = 0; i < static_cast<int32_t>(id_to_bytes_.size()); ++i)
      if (!id_to_bytes_[i].empty()) ranks_.emplace(id_to_bytes_[i], i);
    for (auto& [name, id] : specials) {
      special_[name] = id;
      if (id >= static_cast<int32_t>(special_text_.size())) special_text_.resize(id + 1);
      special_text_[id] = name;
    }
    int err = 0;
    PCRE2_SIZE off = 0;
    re_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kLlama3Pattern), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                        &err, &off, nullptr);
    LLAMAFT_CHECK(re_, "the Llama 3 pre-tokenizer regex did not compile (PCRE2 error ", err, ")");
    pcre2_jit_compile(re_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
    LLAMAFT_REQUIRE(ranks_.size() > 255, what, ": only ", ranks_.size(), " BPE tokens; not a Llama 3 tokenizer");
  }
  ~BpeTokenizer() override { pcre2_code_free(re_); }

  std::vector<int32_t> encode(const std::string& raw) const override {
    const std::string text = sanitize_utf8(raw);
    std::vector<int32_t> out;
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(re_, nullptr);
    PCRE2_SIZE start = 0;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    while (start < text.size()) {
      const int rc = pcre2_match(re_, subject, text.size(), start, 0, md, nullptr);
      if (rc < 0) break;  // every byte is covered by the last alternatives
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      if (ov[1] == ov[0]) {  // cannot happen with this pattern; never loop forever
        ++start;
        continue;
      }
      bpe(text.substr(ov[0], ov[1] - ov[0]), out);
      start = ov[1];
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
  int32_t bos_id() const override { return special_id("<|begin_of_text|>"); }
  int32_t eos_id() const override { return special_id("<|end_of_text|>"); }
  int32_t special_id(const std::string& name) const override {
    auto it = special_.find(name);
    return it == special_.end() ? -1 : it->second;
  }
  int64_t vocab_size() const override { return std::max(id_to_bytes_.size(), special_text_.size()); }
  std::string kind() const override { return "tiktoken-bpe"; }

 private:
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
  pcre2_code* re_ = nullptr;
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
                  ": only byte-level BPE tokenizer.json files (Llama 3) are supported");
  const auto u2b = unicode_to_byte();
  std::vector<std::string> id_to_bytes;
  for (auto it = j["model"]["vocab"].begin(); it != j["model"]["vocab"].end(); ++it) {
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
  return std::make_unique<BpeTokenizer>(std::move(id_to_bytes), std::move(specials), path);
}

}  // namespace llamaft
