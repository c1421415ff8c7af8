// Self-contained exports: what `train`'s export (output.dir/model/) and
// `merge` write beside the weights so the folder works on its own (generate
// --prompt, transformers' AutoTokenizer, vLLM, llama.cpp's converter): the
// base's tokenizer files, copied byte for byte, and generation_config.json.
#pragma once

#include <string>
#include <vector>

#include "model/llama_config.hpp"

namespace llamaft {

// The tokenizer files an export carries when its base has them:
// tokenizer.json, tokenizer.model, the slow GPT-2 tokenizer's vocab.json and
// merges.txt, tokenizer_config.json (chat template, special tokens),
// special_tokens_map.json, added_tokens.json, chat_template.jinja.
const std::vector<std::string>& tokenizer_file_names();

// Copies each tokenizer file `base_dir` holds, and its generation_config.json,
// into `out_dir`, each durably (NAME.partial, fsync, rename). A base without
// generation_config.json gets the one transformers derives from config.json
// (`cfg`'s bos and eos ids). Returns the names written. Callers write
// config.json after it, so a folder with a config.json is whole.
std::vector<std::string> write_companion_files(const std::string& base_dir, const std::string& out_dir,
                                               const LlamaConfig& cfg);

}  // namespace llamaft
