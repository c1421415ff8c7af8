// A Hugging Face model directory's tensors: model.safetensors, or
// model.safetensors.index.json ("weight_map": name -> shard file) with the
// shard files. Every mapped tensor is checked to exist in its file.
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
  bool has(const std::string& name) const { return where_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;
  void read_f32(const std::string& name, int64_t elem_begin, int64_t count, float* out) const;
  std::vector<std::string> names() const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<size_t, const TensorInfo*>> where_;
};

}  // namespace llamaft::io
