// Tokenizers: SentencePiece models (Llama 2, stories260K) through
// libsentencepiece, and Llama 3's tiktoken-style BPE (bpe_tokenizer.hpp) from
// tokenizer.model or tokenizer.json. Found next to the model by default.
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
  // Id of a special token by its text ("<|eot_id|>", "</s>"), or -1.
  virtual int32_t special_id(const std::string& name) const = 0;
  virtual std::string kind() const = 0;  // "sentencepiece" or "tiktoken-bpe"
};

// Loads `path` (the format is detected), or tokenizer.model / tokenizer.json
// inside `model_dir` when path is empty. Returns null when path is empty and
// the model has no tokenizer.
// A short content hash of the tokenizer file, recorded in dataset manifests.
std::string tokenizer_file_hash(const std::string& path);

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, const std::string& model_dir);

}  // namespace llamaft
