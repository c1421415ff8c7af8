// The Hugging Face tokenizer files of a GGUF's tokenizer.ggml.* metadata:
// tokenizer.json (a byte-level BPE from the tokens, merges and token types,
// with the pre-tokenizer llama.cpp names in tokenizer.ggml.pre),
// tokenizer_config.json (special tokens, chat template) and
// generation_config.json. Only what maps exactly is written: GPT-2 style
// vocabularies (tokenizer.ggml.model = gpt2) with the pre-tokenizers
// `smollm` and `gpt-2`; anything else is refused by name.
#pragma once

#include <string>

#include "io/gguf.hpp"

namespace llamaft {

struct HfTokenizerFiles {
  std::string tokenizer_json;
  std::string tokenizer_config_json;
  std::string generation_config_json;
};

HfTokenizerFiles hf_tokenizer_files_from_gguf(const io::GgufFile& f, int64_t model_max_length);

}  // namespace llamaft
