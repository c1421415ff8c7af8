// A task's items as the token rows lm-evaluation-harness 0.4.x's Hugging
// Face model scores (lm_eval/api/model.py and models/huggingface.py):
//  - multiple choice: one loglikelihood request per choice, (context,
//    target_delimiter + choice); trailing whitespace of the context moves to
//    the continuation; the whole string and the context are encoded
//    separately and the continuation is the whole's tokens past the
//    context's count (_encode_pair); an empty context conditions on
//    prefix_token_id (the tokenizer's BOS, else EOS);
//  - loglikelihood_rolling: get_rolling_token_windows + make_disjoint_window
//    at max_length with context_len 1, the first window after prefix_token_id;
//  - each request's input is (context + continuation)[-(max_length + 1):][:-1]
//    and its last len(continuation) positions are scored.
// Encoding is HF's tokenizer.encode(text) with its default special tokens:
// the BOS that the tokenizer's post-processor (or a Llama tokenizer's
// add_bos_token) prepends, unless the text starts with the prefix token's
// text. Texts that contain an added token's text (HF would split it out) are
// refused.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/lm_task.hpp"
#include "data/tokenizer.hpp"

namespace llamaft {

// How HF frames a tokenizer's ids, read from the model folder's
// tokenizer.json / tokenizer_config.json (or a SentencePiece tokenizer.model).
struct HfEncoding {
  int32_t bos = -1;            // prepended by encode(text), or -1
  int32_t prefix_token = -1;   // lm_eval's prefix_token_id
  std::string prefix_text;     // its text (decode([prefix_token]))
  std::vector<std::string> added_tokens;  // texts HF splits out of any input
  std::string describe() const;           // for the banner
};
HfEncoding read_hf_encoding(const std::string& model_dir, const Tokenizer& tok);

// One loglikelihood request: a row for the model.
struct LlRequest {
  std::vector<int32_t> input;         // (L) ids, L <= max_length
  std::vector<int32_t> continuation;  // (C) the targets of input's last C positions
  int64_t item = 0;                   // the task item
  int32_t part = 0;                   // the choice, or the rolling window
  bool truncated = false;             // context cut from the left at max_length
};

// Every request of the task, item by item (choices / windows in order).
std::vector<LlRequest> build_requests(const LmTask& task, const Tokenizer& tok, const HfEncoding& enc,
                                      int max_length);

// lm_eval's word and byte counts of a rolling text: len(re.split(r"\s+", s))
// (Python's Unicode whitespace) and its UTF-8 bytes; and len(s) in code points.
int64_t python_word_count(const std::string& s);
int64_t utf8_code_points(const std::string& s);

}  // namespace llamaft
