// HfTensorSet: resolves a Hugging Face model directory to open
// safetensors files. The index is trusted only after checking it: shard
// names must be plain file names inside the directory, every shard must
// exist and parse, and every listed tensor must be in its shard.
#include "io/hf_tensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "core/fault_points.hpp"

namespace llamaft::io {

namespace {
bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Up to `limit` names in `dir` ending in ".safetensors", for hints.
std::string safetensors_files_in(const std::string& dir, size_t limit) {
  std::string out;
  size_t found = 0;
  if (DIR* d = opendir(dir.c_str())) {
    while (const dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() < 12 || n.compare(n.size() - 12, 12, ".safetensors") != 0) continue;
      if (found++ < limit) out += (out.empty() ? "'" : ", '") + n + "'";
    }
    closedir(d);
  }
  if (found > limit) out += ", ...";
  return out;
}
}  // namespace

HfTensorSet::HfTensorSet(const std::string& model_dir) : dir_(model_dir) {
  open(model_dir);
  if (fault::armed(fault::Point::kMapWeights)) map_and_touch_all();
}

HfTensorSet::~HfTensorSet() {
  for (const auto& [p, n] : mapped_) munmap(p, n);
}

// The fault point map_weights: what the mmap reader used to cost, every page
// of every shard resident in this process (RssFile) while the set is open.
void HfTensorSet::map_and_touch_all() {
  for (const auto& f : files_) {
    const int fd = ::open(f->path().c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
      if (fd >= 0) ::close(fd);
      continue;
    }
    void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) continue;
    mapped_.emplace_back(p, static_cast<size_t>(st.st_size));
    volatile uint8_t sink = 0;
    for (size_t off = 0; off < static_cast<size_t>(st.st_size); off += 4096) sink ^= static_cast<const uint8_t*>(p)[off];
    (void)sink;
  }
}

void HfTensorSet::open(const std::string& model_dir) {
  struct stat st;
  LLAMAFT_REQUIRE(stat(model_dir.c_str(), &st) == 0, "model directory '", model_dir,
                  "' does not exist: ", std::strerror(errno));
  LLAMAFT_REQUIRE(S_ISDIR(st.st_mode), "'", model_dir,
                  "' is not a directory; pass the Hugging Face model folder (with config.json and *.safetensors)");
  const std::string single = model_dir + "/model.safetensors";
  const std::string index = model_dir + "/model.safetensors.index.json";
  if (is_file(index)) {
    open_index(index);
    return;
  }
  if (!is_file(single)) {
    const std::string others = safetensors_files_in(model_dir, 4);
    LLAMAFT_FAIL("'", model_dir, "' has neither model.safetensors nor model.safetensors.index.json",
                 others.empty() ? " (no *.safetensors files at all; PyTorch .bin checkpoints must be converted "
                                  "to safetensors first)"
                                : " (found " + others + "; rename a single file to model.safetensors or add "
                                  "the index)");
  }
  files_.push_back(std::make_unique<SafetensorsFile>(single));
  for (const auto& t : files_[0]->header().tensors) where_[t.name] = {0, &t};
}

void HfTensorSet::open_index(const std::string& index) {
  std::ifstream in(index);
  LLAMAFT_REQUIRE(in.good(), "cannot read '", index, "': ", std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    LLAMAFT_FAIL(index, ": not valid JSON (", e.what(), ")");
  }
  LLAMAFT_REQUIRE(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), index,
                  ": missing the 'weight_map' object (tensor name -> shard file)");
  LLAMAFT_REQUIRE(!j["weight_map"].empty(), index, ": 'weight_map' is empty");
  std::map<std::string, size_t> file_index;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    LLAMAFT_REQUIRE(it.value().is_string(), index, ": weight_map entry for '", it.key(),
                    "' is not a file name");
    const std::string file = it.value().get<std::string>();
    LLAMAFT_REQUIRE(!file.empty() && file.find('/') == std::string::npos && file != "." && file != "..", index,
                    ": shard file name '", file, "' for '", it.key(),
                    "' must be a plain file name in the model directory");
    auto f = file_index.find(file);
    if (f == file_index.end()) {
      const std::string path = dir_ + "/" + file;
      LLAMAFT_REQUIRE(is_file(path), index, " maps '", it.key(), "' to '", file,
                      "', which does not exist (incomplete download?)");
      f = file_index.emplace(file, files_.size()).first;
      files_.push_back(std::make_unique<SafetensorsFile>(path));
    }
    const TensorInfo* t = files_[f->second]->header().find(it.key());
    LLAMAFT_REQUIRE(t, index, " maps '", it.key(), "' to '", file,
                    "', but that file has no such tensor (stale index?)");
    where_[it.key()] = {f->second, t};
  }
}

const HfTensorSet::Location& HfTensorSet::locate(const std::string& name) const {
  auto it = where_.find(name);
  if (it != where_.end()) return it->second;
  // Neighbours in sorted order share the longest prefix with `name`.
  std::string near;
  auto lo = where_.lower_bound(name);
  if (lo != where_.begin()) near += "'" + std::prev(lo)->first + "'";
  if (lo != where_.end()) near += (near.empty() ? "'" : ", '") + lo->first + "'";
  LLAMAFT_FAIL(dir_, ": no tensor named '", name, "' in its safetensors files (", where_.size(),
               " tensors; nearest names: ", near.empty() ? "none" : near,
               "). Check that config.json matches the checkpoint (layer count, tied embeddings).");
}

const TensorInfo& HfTensorSet::info(const std::string& name) const { return *locate(name).info; }

void HfTensorSet::read_f32(const std::string& name, int64_t elem_begin, int64_t count, float* out) const {
  const Location& loc = locate(name);
  files_[loc.file]->read_f32(*loc.info, elem_begin, count, out);
}

void HfTensorSet::prefetch(const std::string& name, int64_t elem_begin, int64_t count) const {
  auto it = where_.find(name);
  if (it != where_.end()) files_[it->second.file]->prefetch(*it->second.info, elem_begin, count);
}

std::vector<std::string> HfTensorSet::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [name, loc] : where_) out.push_back(name);
  return out;
}

}  // namespace llamaft::io
