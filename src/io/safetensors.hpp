// safetensors: a validating header parser, a pread() reader that converts any
// slice of a tensor to fp32 through a bounded buffer (how FSDP ranks read
// only their shard, in memory that does not grow with the file), and a
// writer whose layout is fixed up front so every rank of a job can pwrite()
// its own slices at precomputed offsets without gathering.
//
// Reading validates the whole header before any tensor is touched (see
// parse_safetensors_header); every failure is a llamaft::Error naming the
// file and the tensor. Writing is two-phase: one process calls create()
// (truncates to the final size, writes the header), then any process holding
// an identically built writer calls write_f32() for its slices.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace llamaft::io {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };
size_t dtype_size(DType t);
const char* dtype_name(DType t);
// Unknown names throw, naming `what` (a file/tensor context) and the dtype.
DType parse_dtype(const std::string& name, const std::string& what = "");

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the data section
  int64_t numel() const;
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // sorted by data offset
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + header length
  std::map<std::string, size_t> by_name;  // name -> index into tensors
  const TensorInfo* find(const std::string& name) const;  // nullptr if absent
};

// safetensors MAX_HEADER_SIZE: longer headers are rejected as corrupt.
constexpr uint64_t kMaxHeaderBytes = 100000000;

// Parses and validates the header at the start of a safetensors file.
// `bytes` holds the first `available` bytes of a file of `file_size` bytes;
// only the header must be available. `what` (the path) prefixes messages.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, uint64_t file_size,
                                           const std::string& what);

// A safetensors file open for reading; its header is parsed and validated on
// open. Reads are pread()s: no mapping, so nothing of the file stays resident
// in the process, and the object may be used from several threads at once.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& o) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& o) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const SafetensorsHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  // Bytes [byte_begin, byte_begin + n) of t's raw data into out (t must
  // describe a range inside this file).
  void read_bytes(const TensorInfo& t, uint64_t byte_begin, size_t n, void* out) const;
  // Elements [elem_begin, elem_begin + count) of t (flat, row-major),
  // converted to fp32 from F32, BF16 or F16.
  void read_f32(const TensorInfo& t, int64_t elem_begin, int64_t count, float* out) const;
  // Asks the kernel to start reading those elements into the page cache
  // (POSIX_FADV_WILLNEED) and returns; advisory, never fails.
  void prefetch(const TensorInfo& t, int64_t elem_begin, int64_t count) const;

 private:
  void close_fd() noexcept;
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  SafetensorsHeader header_;
};

// An open output file for pwrite()s at offsets: opened without truncation,
// closed by the destructor (quietly) or by close() (which reports errors).
class SafetensorsOutput {
 public:
  explicit SafetensorsOutput(const std::string& path);
  ~SafetensorsOutput();
  SafetensorsOutput(SafetensorsOutput&& o) noexcept;
  SafetensorsOutput& operator=(SafetensorsOutput&& o) noexcept;
  SafetensorsOutput(const SafetensorsOutput&) = delete;
  SafetensorsOutput& operator=(const SafetensorsOutput&) = delete;

  void pwrite_all(const void* data, size_t bytes, uint64_t offset);
  void sync();   // fsync
  void close();  // throws if the kernel reports a deferred write error
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// Deterministic layout: tensors in insertion order, data contiguous from 0,
// __metadata__ first, header JSON padded with spaces to a multiple of 8.
// Writable dtypes: F32, BF16, F16. Const methods do not mutate, so threads
// may write slices concurrently.
class SafetensorsWriter {
 public:
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape);
  void set_metadata(const std::string& key, const std::string& value);
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  uint64_t data_offset() const;  // 8 + padded header length
  uint64_t file_size() const;
  // Creates/truncates `path` to file_size() bytes and writes the header.
  void create(const std::string& path) const;
  // Writes elements [elem_begin, elem_begin + count) of `name`, converted
  // from fp32 to the tensor's dtype, at its precomputed offset.
  void write_f32(SafetensorsOutput& out, const std::string& name, int64_t elem_begin, int64_t count,
                 const float* src) const;
  // Same, opening (without truncation) and closing `path` around the write.
  void write_f32(const std::string& path, const std::string& name, int64_t elem_begin, int64_t count,
                 const float* src) const;
  std::string header_json() const;  // the padded header, as create() writes it
  // One process writes the whole file atomically: create() under
  // partial_path(path), `fill` writes every tensor, fsync, close, rename into
  // place (core/util.hpp); on any error the partial file is removed and
  // nothing appears under `path`.
  void write_file(const std::string& path, const std::function<void(SafetensorsOutput&)>& fill) const;

 private:
  uint64_t header_bytes() const;
  std::vector<TensorInfo> tensors_;
  std::vector<std::string> entry_json_;  // '"name":{...}' per tensor
  uint64_t entry_bytes_ = 0;             // sum of entry_json_ sizes
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::string metadata_json_;            // '"__metadata__":{...}' or empty
  uint64_t data_bytes_ = 0;
};

struct TensorToSave {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;  // numel floats
};

// Single-process convenience: every tensor through write_file().
void save_safetensors(const std::string& path, const std::vector<TensorToSave>& tensors, DType dtype,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace llamaft::io
