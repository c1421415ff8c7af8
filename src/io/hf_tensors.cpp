#include "io/hf_tensors.hpp"

#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"

namespace llamaft::io {

namespace {
bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
}  // namespace

HfTensorSet::HfTensorSet(const std::string& model_dir) : dir_(model_dir) {
  const std::string single = model_dir + "/model.safetensors";
  const std::string index = model_dir + "/model.safetensors.index.json";
  if (is_file(index)) {
    std::ifstream in(index);
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(ss.str());
    } catch (const std::exception& e) {
      LLAMAFT_FAIL(index, ": not valid JSON (", e.what(), ")");
    }
    LLAMAFT_REQUIRE(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), index,
                    ": missing the 'weight_map' object");
    std::map<std::string, size_t> file_index;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      LLAMAFT_REQUIRE(it.value().is_string(), index, ": weight_map entry for '", it.key(), "' is not a file name");
      const std::string file = it.value().get<std::string>();
      LLAMAFT_REQUIRE(file.find('/') == std::string::npos && file.find("..") == std::string::npos, index,
                      ": shard file name '", file, "' must be a plain file name in the model directory");
      if (!file_index.count(file)) {
        const std::string path = model_dir + "/" + file;
        LLAMAFT_REQUIRE(is_file(path), index, " maps '", it.key(), "' to '", file, "', which does not exist");
        file_index[file] = files_.size();
        files_.push_back(std::make_unique<SafetensorsFile>(path));
      }
      const size_t f = file_index[file];
      const TensorInfo* t = files_[f]->header().find(it.key());
      LLAMAFT_REQUIRE(t, index, " maps '", it.key(), "' to '", file, "', but that file has no such tensor");
      where_[it.key()] = {f, t};
    }
    return;
  }
  LLAMAFT_REQUIRE(is_file(single), "'", model_dir,
                  "' has neither model.safetensors nor model.safetensors.index.json");
  files_.push_back(std::make_unique<SafetensorsFile>(single));
  for (const auto& t : files_[0]->header().tensors) where_[t.name] = {0, &t};
}

const TensorInfo& HfTensorSet::info(const std::string& name) const {
  auto it = where_.find(name);
  LLAMAFT_REQUIRE(it != where_.end(), dir_, ": no tensor named '", name, "'");
  return *it->second.second;
}

void HfTensorSet::read_f32(const std::string& name, int64_t elem_begin, int64_t count, float* out) const {
  auto it = where_.find(name);
  LLAMAFT_REQUIRE(it != where_.end(), dir_, ": no tensor named '", name, "'");
  files_[it->second.first]->read_f32(*it->second.second, elem_begin, count, out);
}

std::vector<std::string> HfTensorSet::names() const {
  std::vector<std::string> out;
  for (const auto& [name, loc] : where_) out.push_back(name);
  return out;
}

}  // namespace llamaft::io
