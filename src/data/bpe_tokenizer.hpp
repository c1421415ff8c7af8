// Byte-level BPE. Llama 3's tiktoken-style BPE: ranks from tokenizer.model
// (base64 token bytes + rank per line) or a Hugging Face tokenizer.json, the
// Llama 3 pre-tokenizer regex through PCRE2 (UTF + Unicode properties), and
// the 256 special tokens after the ranks. GPT-2-style tokenizer.json files
// (a ByteLevel pre-tokenizer with its regex, optionally after
// Digits(individual_digits), as SmolLM2's) merge by the merge list, as
// `tokenizers` does. Both kinds take bos/eos from tokenizer_config.json beside
// them when it names them (a Llama 3 Instruct folder ends turns with <|eot_id|>).
// Invalid UTF-8 in the input is replaced by U+FFFD first, as reading the text
// in Python would.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/tokenizer.hpp"

namespace llamaft {

std::unique_ptr<Tokenizer> load_tiktoken_model(const std::string& path);
std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& path);
bool looks_like_tiktoken_file(const std::string& path);

// Replaces every invalid UTF-8 sequence with U+FFFD (Python's errors="replace"
// maximal-subpart rule).
std::string sanitize_utf8(const std::string& s);

}  // namespace llamaft
