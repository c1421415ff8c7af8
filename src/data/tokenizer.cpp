#include "data/tokenizer.hpp"

#include <sentencepiece_processor.h>
#include <sys/stat.h>

#include "core/error.hpp"

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
    const auto status = sp_.Encode(text, &ids);
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

 private:
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, const std::string& model_dir) {
  std::string p = path;
  if (p.empty()) {
    p = model_dir + "/tokenizer.model";
    if (!file_exists(p)) return nullptr;
  }
  LLAMAFT_REQUIRE(file_exists(p), "tokenizer file '", p, "' does not exist");
  return std::make_unique<SentencePieceTokenizer>(p);
}

}  // namespace llamaft
