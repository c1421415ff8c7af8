#include "data/tokenizer.hpp"

#include <sentencepiece_processor.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>

#include "core/error.hpp"
#include "data/bpe_tokenizer.hpp"

namespace llamaft {

namespace {

bool file_exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) {
    const auto status = sp_.Load(path);
    LLAMAFT_REQUIRE(status.ok(), "cannot load SentencePiece tokenizer '", path, "': ", status.ToString());
  }
  std::vector<int32_t> encode(const std::string& text) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(sanitize_utf8(text), &ids);  // as Python's errors="replace"
    LLAMAFT_REQUIRE(status.ok(), "tokenizer failed to encode text: ", status.ToString());
    return {ids.begin(), ids.end()};
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> v(ids.begin(), ids.end());
    std::string out;
    const auto status = sp_.Decode(v, &out);
    LLAMAFT_REQUIRE(status.ok(), "tokenizer failed to decode ids: ", status.ToString());
    return out;
  }
  int32_t bos_id() const override { return sp_.bos_id(); }
  int32_t eos_id() const override { return sp_.eos_id(); }
  int64_t vocab_size() const override { return sp_.GetPieceSize(); }
  int32_t special_id(const std::string& name) const override {
    const int id = sp_.PieceToId(name);
    return id == sp_.unk_id() && name != sp_.IdToPiece(sp_.unk_id()) ? -1 : id;
  }
  std::string kind() const override { return "sentencepiece"; }

 private:
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, const std::string& model_dir) {
  std::string p = path;
  if (p.empty()) {
    for (const char* name : {"/tokenizer.model", "/tokenizer.json"})
      if (file_exists(model_dir + name)) {
        p = model_dir + name;
        break;
      }
    if (p.empty()) return nullptr;
  }
  LLAMAFT_REQUIRE(file_exists(p), "tokenizer file '", p, "' does not exist");
  if (p.size() > 5 && p.compare(p.size() - 5, 5, ".json") == 0) return load_hf_tokenizer_json(p);
  if (looks_like_tiktoken_file(p)) return load_tiktoken_model(p);
  return std::make_unique<SentencePieceTokenizer>(p);
}

std::string tokenizer_file_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint64_t h = 1469598103934665603ull;
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    for (std::streamsize i = 0; i < in.gcount(); ++i) h = (h ^ static_cast<unsigned char>(buf[i])) * 1099511628211ull;
    if (in.eof()) break;
  }
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(h));
  return out;
}

}  // namespace llamaft
