// Writing GGUF files (version 3, little-endian, alignment 32), the format
// io/gguf.hpp reads: typed metadata in the order added, tensor infos in the
// order added, then each tensor's bytes at an aligned offset, zero-padded to
// the alignment after every tensor as ggml's gguf writer and gguf-py pad.
//
// The layout is fixed before anything is written, so the file's size is
// known: write() reserves it up front under PATH.partial (posix_fallocate:
// a full disk fails before any data), streams the tensors one at a time
// through a callback (the model never has to be in memory at once), fsyncs,
// and renames the file into place. On any error the partial file is removed
// and PATH is left as it was.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/gguf.hpp"

namespace llamaft::io {

struct GgufTensorSpec {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the row (contiguous) dimension
  uint32_t type = 0;        // ggml type number
  uint64_t bytes = 0;       // size of the data
  uint64_t offset = 0;      // from the start of the data section (aligned)
};

class GgufWriter {
 public:
  static constexpr uint64_t kAlignment = 32;  // GGUF_DEFAULT_ALIGNMENT

  // Metadata; a key added twice is a programming error.
  void add_string(const std::string& key, const std::string& value);
  void add_bool(const std::string& key, bool value);
  void add_u32(const std::string& key, uint32_t value);
  void add_i32(const std::string& key, int32_t value);
  void add_f32(const std::string& key, float value);
  void add_string_array(const std::string& key, const std::vector<std::string>& values);
  void add_f32_array(const std::string& key, const std::vector<float>& values);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& values);
  bool has(const std::string& key) const;

  // A tensor of `type` (any type with a known block size); its data offset
  // follows the previous tensor's, aligned.
  void add_tensor(const std::string& name, std::vector<int64_t> ne, uint32_t type);
  const std::vector<GgufTensorSpec>& tensors() const { return tensors_; }

  uint64_t header_bytes() const;  // magic .. tensor infos, padded to the alignment
  uint64_t file_size() const;

  // Writes the file atomically (see the file comment). fill(i, dst) writes
  // tensor i's tensors()[i].bytes bytes into dst, in order i = 0, 1, ...
  void write(const std::string& path, const std::function<void(size_t, uint8_t*)>& fill) const;

 private:
  void add_raw(const std::string& key, GgufValueType type, std::string payload);
  std::vector<std::string> keys_;
  std::string kv_bytes_;  // every key/value serialised, in order
  std::vector<GgufTensorSpec> tensors_;
  uint64_t data_bytes_ = 0;
};

}  // namespace llamaft::io
