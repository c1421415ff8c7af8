// train.sample_prompts: the prompts of the in-training samples, as a user
// types them. Token ids ("1,12,13;1,15,16") are taken as given. Text
// ("Reverse: 1 2 3; Say hi", ';' between prompts and '\;' for a literal one,
// or a JSON list of strings) goes through train.sample_template as
// `generate --prompt` does: a user turn and the open assistant turn of the
// model's own template (auto), or BOS + the text when there is none.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/tokenizer.hpp"
#include "model/llama_config.hpp"

namespace llamaft {

struct SamplePrompts {
  std::vector<std::vector<int32_t>> ids;  // one per prompt
  std::vector<std::string> texts;         // the text prompts ("" for id prompts)
  std::string template_desc;              // the template text prompts went through ("" for ids)
  std::shared_ptr<Tokenizer> tokenizer;   // for decoding samples (null without text prompts or a tokenizer)
};

// True when `value` is written as token ids (digits, ',', ';' and spaces only).
bool is_token_id_list(const std::string& value);
// Splits text prompts: a JSON list of strings, else at unescaped ';' (trimmed).
std::vector<std::string> split_text_prompts(const std::string& value);

// The text of a sample: ids the tokenizer does not have (a model's vocabulary
// can be larger) are written as [id].
std::string decode_sample(const Tokenizer& tok, const std::vector<int32_t>& ids);

// `tokenizer_path` is model.tokenizer ("" : the one in model_dir).
SamplePrompts build_sample_prompts(const std::string& value, const std::string& template_option,
                                   const std::string& model_dir, const std::string& tokenizer_path,
                                   const LlamaConfig& mc);

}  // namespace llamaft
