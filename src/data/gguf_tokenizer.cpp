// GGUF tokenizer metadata -> Hugging Face tokenizer files; see
// gguf_tokenizer.hpp. llama.cpp's pre-tokenizers are regex lists; the two
// written here have exact `tokenizers` equivalents:
//   gpt-2  : GPT-2's regex                  = ByteLevel(use_regex=true)
//   smollm : \p{N} first, then GPT-2's regex = Sequence[Digits(individual_digits=true), ByteLevel(use_regex=true)]
// (llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_SMOLLM shares STARCODER's list).
#include "data/gguf_tokenizer.hpp"

#include <nlohmann/json.hpp>
#include <unordered_set>

#include "core/error.hpp"

namespace llamaft {

namespace {

using ojson = nlohmann::ordered_json;

// llama.cpp's llama_token_type.
enum TokenType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

const std::vector<std::string>& string_array(const io::GgufFile& f, const std::string& key) {
  const io::GgufValue* v = f.find(key);
  LLAMAFT_REQUIRE(v, f.path(), ": GGUF metadata '", key, "' is missing");
  LLAMAFT_REQUIRE(v->type == io::GgufValueType::kArray && v->elem_type == io::GgufValueType::kString, f.path(),
                  ": GGUF metadata '", key, "' must be an array of strings");
  return v->strings;
}

ojson byte_level(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

ojson pre_tokenizer_for(const std::string& pre, const std::string& path) {
  if (pre == "smollm")
    return {{"type", "Sequence"},
            {"pretokenizers", ojson::array({{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)})}};
  if (pre == "gpt-2") return byte_level(true);
  LLAMAFT_FAIL(path, ": tokenizer.ggml.pre '", pre, "' is not supported by convert (supported: smollm, gpt-2)");
}

// One JSON string literal (escaped as JSON requires); invalid UTF-8 is refused.
std::string quoted(const std::string& s, const std::string& path) {
  try {
    return nlohmann::json(s).dump();
  } catch (const std::exception&) {
    LLAMAFT_FAIL(path, ": a tokenizer string is not valid UTF-8");
  }
}

// tokenizer.json's model.vocab, written by hand: an ordered_json object
// checks each insert against every key, quadratic in 49K+ tokens.
std::string vocab_json(const std::vector<std::string>& tokens, const std::string& path) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  std::unordered_set<std::string> seen;
  std::string vocab = "{";
  for (int64_t i = 0; i < n; ++i) {
    LLAMAFT_REQUIRE(seen.insert(tokens[i]).second, path, ": token '", tokens[i], "' appears twice (ids ", i,
                    " and earlier); a tokenizer.json vocabulary cannot hold it");
    vocab += (i ? "," : "") + quoted(tokens[i], path) + ":" + std::to_string(i);
  }
  vocab += "}";
  return vocab;
}

// tokenizer.json's model.merges: each "left right".
std::string merges_json(const std::vector<std::string>& merges, const std::string& path) {
  std::string merge_list = "[";
  for (size_t i = 0; i < merges.size(); ++i) {
    const size_t sp = merges[i].find(' ');
    LLAMAFT_REQUIRE(sp != std::string::npos && sp > 0 && sp + 1 < merges[i].size() &&
                        merges[i].find(' ', sp + 1) == std::string::npos,
                    path, ": merge ", i, " '", merges[i], "' is not two tokens separated by one space");
    merge_list += (i ? "," : "") + quoted(merges[i], path);
  }
  merge_list += "]";
  return merge_list;
}

// Control and user-defined tokens, as tokenizer.json's added_tokens and
// tokenizer_config.json's added_tokens_decoder list them.
struct AddedTokens {
  ojson list = ojson::array();
  ojson decoder = ojson::object();
};

AddedTokens added_tokens(const std::vector<std::string>& tokens, const io::GgufValue* types) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  AddedTokens added;
  for (int64_t i = 0; i < n && types; ++i) {
    const int64_t t = types->ints[static_cast<size_t>(i)];
    if (t != kControl && t != kUserDefined) continue;
    const bool special = t == kControl;
    ojson entry = {{"id", i},           {"content", tokens[i]}, {"single_word", false}, {"lstrip", false},
                   {"rstrip", false},   {"normalized", false},  {"special", special}};
    added.list.push_back(entry);
    entry.erase("id");
    added.decoder[std::to_string(i)] = entry;
  }
  return added;
}

// BOS before each sequence when the GGUF adds one, else the byte-level
// post-processor.
ojson post_processor(const io::GgufFile& f, bool add_bos, const std::string& bos) {
  if (!add_bos) return {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  LLAMAFT_REQUIRE(!bos.empty(), f.path(), ": tokenizer.ggml.add_bos_token is set but there is no bos_token_id");
  const int64_t bos_id = f.get_int("tokenizer.ggml.bos_token_id");
  return {{"type", "TemplateProcessing"},
          {"single", ojson::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                   {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
          {"pair", ojson::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                 {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                 {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
                                 {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
          {"special_tokens", {{bos, {{"id", bos}, {"ids", {bos_id}}, {"tokens", {bos}}}}}}};
}

// generation_config.json: the token ids the GGUF sets.
std::string generation_config_json(const io::GgufFile& f) {
  ojson gc = ojson::object();
  if (f.get_int_or("tokenizer.ggml.bos_token_id", -1) >= 0) gc["bos_token_id"] = f.get_int("tokenizer.ggml.bos_token_id");
  if (f.get_int_or("tokenizer.ggml.eos_token_id", -1) >= 0) gc["eos_token_id"] = f.get_int("tokenizer.ggml.eos_token_id");
  if (f.get_int_or("tokenizer.ggml.padding_token_id", -1) >= 0)
    gc["pad_token_id"] = f.get_int("tokenizer.ggml.padding_token_id");
  return gc.dump(2) + "\n";
}

}  // namespace

HfTokenizerFiles hf_tokenizer_files_from_gguf(const io::GgufFile& f, int64_t model_max_length) {
  const std::string& path = f.path();
  const std::string model = f.get_string_or("tokenizer.ggml.model", "");
  LLAMAFT_REQUIRE(model == "gpt2", path, ": tokenizer.ggml.model '", model,
                  "' is not supported by convert (supported: gpt2, a byte-level BPE)");
  const std::string pre = f.get_string_or("tokenizer.ggml.pre", "");
  const ojson pre_tokenizer = pre_tokenizer_for(pre, path);
  const std::vector<std::string>& tokens = string_array(f, "tokenizer.ggml.tokens");
  const std::vector<std::string>& merges = string_array(f, "tokenizer.ggml.merges");
  const io::GgufValue* types = f.find("tokenizer.ggml.token_type");
  LLAMAFT_REQUIRE(!types || (types->type == io::GgufValueType::kArray && types->ints.size() == tokens.size()), path,
                  ": tokenizer.ggml.token_type must be an integer array with one entry per token");
  const int64_t n = static_cast<int64_t>(tokens.size());
  auto token_at = [&](const char* key) -> std::string {
    const int64_t id = f.get_int_or(key, -1);
    if (id < 0) return "";
    LLAMAFT_REQUIRE(id < n, path, ": ", key, " = ", id, " is not a token id (", n, " tokens)");
    return tokens[static_cast<size_t>(id)];
  };
  const bool add_bos = f.get_bool_or("tokenizer.ggml.add_bos_token", false);
  LLAMAFT_REQUIRE(!f.get_bool_or("tokenizer.ggml.add_eos_token", false), path,
                  ": tokenizer.ggml.add_eos_token = true is not supported by convert");
  LLAMAFT_REQUIRE(!f.get_bool_or("tokenizer.ggml.add_space_prefix", false), path,
                  ": tokenizer.ggml.add_space_prefix = true is not supported by convert for a gpt2 tokenizer");

  // tokenizer.json
  const std::string vocab = vocab_json(tokens, path);
  const std::string merge_list = merges_json(merges, path);
  const AddedTokens added = added_tokens(tokens, types);
  const std::string bos = token_at("tokenizer.ggml.bos_token_id"), eos = token_at("tokenizer.ggml.eos_token_id");
  const std::string unk = token_at("tokenizer.ggml.unknown_token_id"), pad = token_at("tokenizer.ggml.padding_token_id");
  const ojson post = post_processor(f, add_bos, bos);
  ojson head = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added.list},
                {"normalizer", nullptr}, {"pre_tokenizer", pre_tokenizer}, {"post_processor", post},
                {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}}};
  ojson model_head = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", unk.empty() ? ojson(nullptr) : ojson(unk)},
                      {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}, {"fuse_unk", false},
                      {"byte_fallback", false}, {"ignore_merges", false}};
  std::string model_json = model_head.dump();
  model_json.pop_back();  // the closing brace: vocab and merges follow
  std::string head_json = head.dump();
  head_json.pop_back();
  HfTokenizerFiles out;
  out.tokenizer_json = head_json + ",\"model\":" + model_json + ",\"vocab\":" + vocab + ",\"merges\":" + merge_list + "}}\n";

  // tokenizer_config.json
  ojson tc = {{"add_prefix_space", false}, {"added_tokens_decoder", added.decoder}};
  if (add_bos) tc["add_bos_token"] = true;
  if (!bos.empty()) tc["bos_token"] = bos;
  if (!eos.empty()) tc["eos_token"] = eos;
  if (!pad.empty()) tc["pad_token"] = pad;
  if (!unk.empty()) tc["unk_token"] = unk;
  if (f.find("tokenizer.chat_template")) tc["chat_template"] = f.get_string("tokenizer.chat_template");
  tc["clean_up_tokenization_spaces"] = false;
  tc["model_max_length"] = model_max_length;
  tc["tokenizer_class"] = add_bos ? "PreTrainedTokenizerFast" : "GPT2Tokenizer";
  out.tokenizer_config_json = tc.dump(2) + "\n";

  out.generation_config_json = generation_config_json(f);
  return out;
}

}  // namespace llamaft
