// safetensors: a validating header parser, an mmap reader that converts any
// slice of a tensor to fp32 (how FSDP ranks read only their shard), and a
// writer whose layout is fixed up front so every rank of a job can pwrite()
// its own slices at precomputed offsets.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace llamaft::io {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };
size_t dtype_size(DType t);
const char* dtype_name(DType t);
DType parse_dtype(const std::string& name, const std::string& what);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the data section
  int64_t numel() const;
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // sorted by begin
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + header length
  const TensorInfo* find(const std::string& name) const;
};

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

// Validates everything (see the .cpp); errors name `what` and the tensor.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, uint64_t file_size,
                                           const std::string& what);

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& o) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) = delete;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const SafetensorsHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  const uint8_t* data(const TensorInfo& t) const { return base_ + header_.data_offset + t.begin; }
  // Elements [elem_begin, elem_begin + count) of t, converted to fp32.
  void read_f32(const TensorInfo& t, int64_t elem_begin, int64_t count, float* out) const;

 private:
  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  SafetensorsHeader header_;
};

// An open output file for pwrite()s at offsets (no truncation).
class SafetensorsOutput {
 public:
  explicit SafetensorsOutput(const std::string& path);
  ~SafetensorsOutput();
  SafetensorsOutput(const SafetensorsOutput&) = delete;
  SafetensorsOutput& operator=(const SafetensorsOutput&) = delete;
  void pwrite_all(const void* data, size_t bytes, uint64_t offset);
  void sync();  // fsync
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

class SafetensorsWriter {
 public:
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape);
  void set_metadata(const std::string& key, const std::string& value);
  uint64_t file_size() const;
  // Creates/truncates the file to its final size and writes the header.
  void create(const std::string& path) const;
  // Writes elements [elem_begin, elem_begin + count) of `name`, converted
  // from fp32 to the tensor's dtype, at its precomputed offset.
  void write_f32(SafetensorsOutput& out, const std::string& name, int64_t elem_begin, int64_t count,
                 const float* src) const;

 private:
  std::string header_json() const;
  uint64_t data_offset() const;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  uint64_t data_bytes_ = 0;
  mutable std::string cached_header_;
};

}  // namespace llamaft::io
