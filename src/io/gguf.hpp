// GGUF files (llama.cpp's format, versions 2 and 3, little-endian): the
// header, every metadata value type (arrays included), tensor infos and the
// data alignment, all bounds-checked against the file's size; and fp32
// dequantization of the block formats most published GGUFs use (F32, F16,
// BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K), bit-equal to gguf-py's numpy
// `gguf.quants.dequantize` (the same products in the same order, no fused
// multiply-add). A malformed or truncated file is a user error (exit 2)
// naming the file and what is wrong, never a crash; other tensor types are
// refused by name.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace llamaft::io {

// GGUF metadata value types (gguf_type in ggml's gguf.h).
enum class GgufValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6, kBool = 7,
  kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};
const char* gguf_value_type_name(GgufValueType t);

// One metadata value. Scalars: the integer types in `i` (uint64 in `u`),
// floats in `f`, bool in `i` (0/1), strings in `str`. Arrays: `elem_type`
// and one of `ints` (integers and bools), `floats`, `strings`, `items`
// (nested arrays).
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  std::string str;
  GgufValueType elem_type = GgufValueType::kUint8;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::vector<GgufValue> items;

  bool is_integer() const;
  bool is_number() const { return is_integer() || type == GgufValueType::kFloat32 || type == GgufValueType::kFloat64; }
  size_t array_size() const;
};

// ggml tensor types by their numbers in ggml.h; the names are ggml's.
enum class GgmlType : uint32_t {
  kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kBF16 = 30,
};
// ggml's name for any type number ("Q5_0", "IQ2_XS", ...), "type N" if unknown.
std::string ggml_type_name(uint32_t type);
// True for the types dequantize_gguf_rows() handles.
bool ggml_type_supported(uint32_t type);

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the contiguous (row) dimension
  uint32_t type = 0;
  uint64_t offset = 0;      // from the start of the data section
  uint64_t bytes = 0;       // size in the file
  int64_t numel() const;
  // The PyTorch / safetensors shape: ne reversed.
  std::vector<int64_t> torch_shape() const;
};

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);  // maps the file read-only; parses and checks the header
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;

  // Typed getters: a missing key (without fallback) or a wrong type is an
  // error naming the key and the file.
  std::string get_string(const std::string& key) const;
  std::string get_string_or(const std::string& key, const std::string& fallback) const;
  int64_t get_int(const std::string& key) const;
  int64_t get_int_or(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key) const;
  double get_float_or(const std::string& key, double fallback) const;
  bool get_bool_or(const std::string& key, bool fallback) const;

  // The tensor's raw bytes (inside the mapping; valid while the file lives).
  const uint8_t* tensor_data(const GgufTensorInfo& t) const;
  // The whole tensor as fp32, ggml order (row after row of ne[0] values);
  // `out` holds t.numel() floats. Unsupported types are refused by name.
  void dequantize(const GgufTensorInfo& t, float* out) const;

 private:
  void parse();
  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_start_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Dequantizes `n` values (a multiple of the type's block size) of `type`
// from `src` into `dst`, as ggml's dequantize_row_* and gguf-py do.
void dequantize_gguf_rows(uint32_t type, const uint8_t* src, float* dst, int64_t n);
// Block size in values and bytes per block of a supported type.
int64_t ggml_block_values(uint32_t type);
int64_t ggml_block_bytes(uint32_t type);

}  // namespace llamaft::io
