// A Hugging Face model directory's tensors: model.safetensors, or
// model.safetensors.index.json ("weight_map": name -> shard file) with the
// shard files. Every shard is opened and its header validated up front, and
// every indexed tensor is checked to exist in its file, so a bad checkpoint
// fails before any rank starts loading.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.hpp"

namespace llamaft::io {

class HfTensorSet {
 public:
  explicit HfTensorSet(const std::string& model_dir);
  ~HfTensorSet();
  HfTensorSet(const HfTensorSet&) = delete;
  HfTensorSet& operator=(const HfTensorSet&) = delete;
  bool has(const std::string& name) const { return where_.count(name) > 0; }
  // Missing names throw, naming the directory and the nearest names present.
  const TensorInfo& info(const std::string& name) const;
  // Elements [elem_begin, elem_begin + count) of `name` as fp32.
  void read_f32(const std::string& name, int64_t elem_begin, int64_t count, float* out) const;
  // Starts reading those elements into the page cache (advisory).
  void prefetch(const std::string& name, int64_t elem_begin, int64_t count) const;
  std::vector<std::string> names() const;  // sorted
  const std::string& dir() const { return dir_; }

 private:
  struct Location {
    size_t file;
    const TensorInfo* info;  // points into files_[file]->header()
  };
  const Location& locate(const std::string& name) const;
  void open(const std::string& model_dir);
  void map_and_touch_all();
  void open_index(const std::string& index_path);
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Location> where_;
  std::vector<std::pair<void*, size_t>> mapped_;  // fault point map_weights only
};

}  // namespace llamaft::io
