// Tokenizers. SentencePiece models (Llama 2, stories260K) through
// libsentencepiece. Found next to the model by default (tokenizer.model).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llamaft {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;  // no BOS/EOS
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual int64_t vocab_size() const = 0;
};

// Loads `path`, or tokenizer.model inside `model_dir` when path is empty.
// Returns null when path is empty and the model has no tokenizer.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, const std::string& model_dir);

}  // namespace llamaft
