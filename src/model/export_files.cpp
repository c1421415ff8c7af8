#include "model/export_files.hpp"

#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "core/util.hpp"

namespace llamaft {

namespace {

bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LLAMAFT_REQUIRE(in.good(), "cannot open '", path, "' to copy it into the export");
  std::stringstream ss;
  ss << in.rdbuf();
  LLAMAFT_REQUIRE(!in.bad(), "reading '", path, "' failed");
  return ss.str();
}

}  // namespace

const std::vector<std::string>& tokenizer_file_names() {
  static const std::vector<std::string> names = {
      "tokenizer.json",          "tokenizer.model",        "vocab.json",        "merges.txt",
      "tokenizer_config.json",   "special_tokens_map.json", "added_tokens.json", "chat_template.jinja"};
  return names;
}

std::vector<std::string> write_companion_files(const std::string& base_dir, const std::string& out_dir,
                                               const LlamaConfig& cfg) {
  std::vector<std::string> written;
  make_directories(out_dir);
  std::vector<std::string> names = tokenizer_file_names();
  names.push_back("generation_config.json");
  for (const auto& name : names) {
    const std::string src = base_dir + "/" + name;
    if (base_dir.empty() || !is_file(src)) continue;
    write_file_durably(out_dir + "/" + name, read_whole(src));
    written.push_back(name);
  }
  if (!is_file(base_dir + "/generation_config.json")) {
    // What transformers' GenerationConfig.from_model_config takes from config.json.
    nlohmann::ordered_json g = {{"_from_model_config", true}, {"bos_token_id", cfg.bos_token_id}};
    if (cfg.eos_token_ids.size() == 1) g["eos_token_id"] = cfg.eos_token_ids[0];
    else g["eos_token_id"] = cfg.eos_token_ids;
    write_file_durably(out_dir + "/generation_config.json", g.dump(2) + "\n");
    written.push_back("generation_config.json");
  }
  return written;
}

}  // namespace llamaft
