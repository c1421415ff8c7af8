// A model's tokenizer as GGUF tokenizer.* metadata, the way llama.cpp's
// convert_hf_to_gguf.py writes it, so that llama.cpp tokenizes as the model
// was trained:
//   - SentencePiece (tokenizer.model, Llama 2): tokenizer.ggml.model
//     "llama", pre "default", every piece with its score and type (normal,
//     unknown, control, unused, byte), added tokens from added_tokens.json
//     and tokenizer_config.json's added_tokens_decoder (score -1000), ids
//     beyond the tokenizer up to the model's vocab_size as "[PADi]" (unused,
//     score -10000);
//   - byte-level BPE (tokenizer.json, or Llama 3's tiktoken tokenizer.model
//     converted as transformers' TikTokenConverter does): model "gpt2",
//     tokens and merges, token types (added tokens: control when special or
//     "<|...|>", else user-defined), and the pre-tokenizer name llama.cpp
//     knows for the tokenizer.json's pre-tokenizer: `llama-bpe` (Llama 3's
//     split regex with ignore_merges), `smollm` (individual digits, then
//     GPT-2's regex) or `gpt-2` (GPT-2's regex);
//   - special token ids, add_bos/add_eos/add_sep, add_space_prefix and the
//     chat template from tokenizer.json's post-processor,
//     tokenizer_config.json (chat_template.jinja / .json) and config.json,
//     with gguf-py SpecialVocab's precedence.
// Anything else (another tokenizer model, pre-tokenizer or normalizer, a
// tokenizer larger than the model's vocabulary, a list of named chat
// templates) is refused with a message naming it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llamaft {

struct GgufVocab {
  std::string model;                   // tokenizer.ggml.model: "llama" or "gpt2"
  std::string pre;                     // tokenizer.ggml.pre
  std::vector<std::string> tokens;     // one per id, vocab_size of them
  std::vector<float> scores;           // "llama" only
  std::vector<int32_t> token_types;    // llama_token_type: 1 normal .. 6 byte
  std::vector<std::string> merges;     // "gpt2" only
  // ("bos", 1), ... in SpecialVocab's order; key suffixes as gguf-py names them
  std::vector<std::pair<std::string, int64_t>> special_ids;
  std::vector<std::pair<std::string, bool>> add_special;  // ("bos", true), ...
  int add_space_prefix = -1;          // -1: not written
  bool has_chat_template = false;
  std::string chat_template;
  std::string source;                 // what was read, for messages and reports
  std::vector<std::string> notes;     // what was skipped, as the converter skips it (printed by the caller)
};

// The tokenizer at `tokenizer_path` (a tokenizer.model or tokenizer.json
// file, or a folder holding one; "" means model_dir) for a model of
// `vocab_size` ids; config.json's *_token_id come from model_dir.
GgufVocab gguf_vocab_from_files(const std::string& tokenizer_path, const std::string& model_dir, int64_t vocab_size);

// The GGUF key of a special token type ("sep" -> tokenizer.ggml.seperator_token_id,
// gguf-py's spelling), or "" when gguf-py writes none for it ("cls").
std::string gguf_special_id_key(const std::string& type);

}  // namespace llamaft
