// safetensors writing: the pwrite() handle, the precomputed-layout writer
// and the single-process save_safetensors(). The header is kept as one JSON
// fragment per tensor so its length (hence every data offset) is known after
// each add() without re-serialising, and const methods never mutate: ranks
// or threads can write slices concurrently with identically built writers.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/parallel.hpp"
#include "core/util.hpp"
#include "io/safetensors.hpp"

namespace llamaft::io {

namespace {
constexpr int64_t kConvertChunk = 1 << 20;  // elements converted (by every core) per pwrite

// JSON text of `v`; names that are not UTF-8 become a user error.
std::string dump_or_fail(const nlohmann::ordered_json& v, const std::string& what) {
  try {
    return v.dump();
  } catch (const nlohmann::json::exception& e) {
    LLAMAFT_FAIL("safetensors writer: ", what, " is not valid UTF-8 (", e.what(), ")");
  }
}
}  // namespace

// ---- SafetensorsOutput ------------------------------------------------------------------

SafetensorsOutput::SafetensorsOutput(const std::string& path) : path_(path) {
  fd_ = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  LLAMAFT_REQUIRE(fd_ >= 0, "cannot open '", path, "' for writing: ", std::strerror(errno),
                  " (create() must have made it first)");
}

SafetensorsOutput::~SafetensorsOutput() {
  if (fd_ >= 0) ::close(fd_);
}

SafetensorsOutput::SafetensorsOutput(SafetensorsOutput&& o) noexcept : path_(std::move(o.path_)), fd_(o.fd_) {
  o.fd_ = -1;
}

SafetensorsOutput& SafetensorsOutput::operator=(SafetensorsOutput&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

void SafetensorsOutput::pwrite_all(const void* data, size_t bytes, uint64_t offset) {
  LLAMAFT_REQUIRE(fd_ >= 0, "write to '", path_, "' after it was closed");
  uint64_t done = 0;
  const int rc = pwrite_full(fd_, data, bytes, offset, &done);
  LLAMAFT_REQUIRE(rc == 0, "write of ", bytes - done, " bytes at offset ", offset + done, " to '", path_,
                  "' failed: ", rc > 0 ? std::strerror(rc) : "no progress (disk full?)");
  // Start writing back what is now dirty without waiting for it (RocksDB's
  // bytes_per_sync): the disk works while the caller produces the next
  // bytes, and the final fsync() finds little left to do. Advisory: errors
  // surface in fsync().
  if (bytes > 0) (void)sync_file_range(fd_, static_cast<off_t>(offset), static_cast<off_t>(bytes), SYNC_FILE_RANGE_WRITE);
}

void SafetensorsOutput::sync() {
  LLAMAFT_REQUIRE(fd_ >= 0, "fsync of '", path_, "' after it was closed");
  LLAMAFT_REQUIRE(fsync(fd_) == 0, "fsync of '", path_, "' failed: ", std::strerror(errno));
}

void SafetensorsOutput::close() {
  if (fd_ < 0) return;
  const int rc = ::close(fd_);
  fd_ = -1;
  LLAMAFT_REQUIRE(rc == 0, "closing '", path_, "' failed: ", std::strerror(errno), " (data may be lost)");
}

// ---- SafetensorsWriter ------------------------------------------------------------------

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape) {
  LLAMAFT_REQUIRE(!name.empty() && name != "__metadata__", "safetensors writer: invalid tensor name '", name,
                  "'");
  LLAMAFT_REQUIRE(!index_.count(name), "safetensors writer: tensor '", name, "' added twice");
  LLAMAFT_REQUIRE(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16, "safetensors writer: tensor '",
                  name, "' has dtype ", dtype_name(dtype), "; only F32, BF16 and F16 can be written");
  int64_t numel = 1;
  for (int64_t d : shape)
    LLAMAFT_REQUIRE(d >= 0 && !__builtin_mul_overflow(numel, d, &numel), "safetensors writer: tensor '", name,
                    "' has a negative or overflowing dimension ", d);
  uint64_t bytes = 0;
  LLAMAFT_REQUIRE(!__builtin_mul_overflow(static_cast<uint64_t>(numel), dtype_size(dtype), &bytes) &&
                      data_bytes_ + bytes >= data_bytes_,
                  "safetensors writer: tensor '", name, "' is too large");
  TensorInfo t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.begin = data_bytes_;
  t.end = data_bytes_ + bytes;

  nlohmann::ordered_json entry;
  entry["dtype"] = dtype_name(dtype);
  entry["shape"] = t.shape;
  entry["data_offsets"] = {t.begin, t.end};
  std::string json = dump_or_fail(name, "tensor name '" + name + "'") + ":" + entry.dump();

  data_bytes_ = t.end;
  entry_bytes_ += json.size();
  entry_json_.push_back(std::move(json));
  index_[name] = tensors_.size();
  tensors_.push_back(std::move(t));
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
  nlohmann::ordered_json m = nlohmann::ordered_json::object();
  for (const auto& [k, v] : metadata_) m[k] = v;
  metadata_json_ = "\"__metadata__\":" + dump_or_fail(m, "metadata '" + key + "'");
}

uint64_t SafetensorsWriter::header_bytes() const {
  const uint64_t parts = entry_json_.size() + (metadata_json_.empty() ? 0 : 1);
  const uint64_t unpadded = 2 + metadata_json_.size() + entry_bytes_ + (parts ? parts - 1 : 0);
  return (unpadded + 7) / 8 * 8;  // data section 8-byte aligned, as safetensors pads
}

std::string SafetensorsWriter::header_json() const {
  std::string s = "{";
  s.reserve(header_bytes());
  if (!metadata_json_.empty()) s += metadata_json_;
  for (size_t i = 0; i < entry_json_.size(); ++i) {
    if (i > 0 || !metadata_json_.empty()) s += ',';
    s += entry_json_[i];
  }
  s += '}';
  s.append(header_bytes() - s.size(), ' ');
  return s;
}

uint64_t SafetensorsWriter::data_offset() const { return 8 + header_bytes(); }
uint64_t SafetensorsWriter::file_size() const { return data_offset() + data_bytes_; }

void SafetensorsWriter::create(const std::string& path) const {
  const std::string header = header_json();
  LLAMAFT_CHECK(header.size() == header_bytes(), "header size ", header.size(), " != ", header_bytes());
  LLAMAFT_REQUIRE(header.size() <= kMaxHeaderBytes, "safetensors writer: header for '", path, "' is ",
                  header.size(), " bytes, above the 100 MB limit readers accept");
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  LLAMAFT_REQUIRE(fd >= 0, "cannot create '", path, "': ", std::strerror(errno));
  // Reserve every block now, so a full disk fails here, before any data is
  // written, rather than in the middle (or, for a sparse file, at read time).
  int err = posix_fallocate(fd, 0, static_cast<off_t>(file_size()));
  if (err == EOPNOTSUPP || err == EINVAL)  // a filesystem without fallocate
    err = ftruncate(fd, static_cast<off_t>(file_size())) == 0 ? 0 : errno;
  if (err != 0) {
    ::close(fd);
    ::unlink(path.c_str());
    LLAMAFT_FAIL("cannot allocate ", file_size(), " bytes for '", path, "': ", std::strerror(err));
  }
  ::close(fd);
  SafetensorsOutput out(path);
  uint8_t len[8];
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));  // little-endian
  out.pwrite_all(len, 8, 0);
  out.pwrite_all(header.data(), header.size(), 8);
  out.close();
}

void SafetensorsWriter::write_f32(SafetensorsOutput& out, const std::string& name, int64_t elem_begin,
                                  int64_t count, const float* src) const {
  auto it = index_.find(name);
  LLAMAFT_CHECK(it != index_.end(), "safetensors writer for '", out.path(), "' has no tensor '", name, "'");
  const TensorInfo& t = tensors_[it->second];
  const int64_t numel = t.numel();
  LLAMAFT_CHECK(elem_begin >= 0 && count >= 0 && elem_begin <= numel && count <= numel - elem_begin,
                "slice [", elem_begin, ", +", count, ") is outside tensor '", name, "' (", numel, " elements)");
  const uint64_t es = dtype_size(t.dtype);
  const uint64_t offset = data_offset() + t.begin + static_cast<uint64_t>(elem_begin) * es;
  // Chunks converted and written by every core (pwrite() at distinct offsets
  // is safe across threads; the kernel's copy into the page cache is then
  // parallel too). The first failure is rethrown after the loop.
  const int64_t chunks = (count + kConvertChunk - 1) / kConvertChunk;
  const bool f32 = t.dtype == DType::F32, bf16 = t.dtype == DType::BF16;
  parallel_for_each<std::vector<uint16_t>>(chunks, chunks > 1, [&](std::vector<uint16_t>& buf, int64_t c) {
    const int64_t done = c * kConvertChunk, n = std::min(kConvertChunk, count - done);
    if (f32) {
      out.pwrite_all(src + done, static_cast<size_t>(n) * 4, offset + static_cast<uint64_t>(done) * 4);
      return;
    }
    buf.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) buf[i] = bf16 ? f32_to_bf16(src[done + i]) : f32_to_f16(src[done + i]);
    out.pwrite_all(buf.data(), static_cast<size_t>(n) * 2, offset + static_cast<uint64_t>(done) * 2);
  });
}

void SafetensorsWriter::write_f32(const std::string& path, const std::string& name, int64_t elem_begin,
                                  int64_t count, const float* src) const {
  SafetensorsOutput out(path);
  write_f32(out, name, elem_begin, count, src);
  out.close();
}

void SafetensorsWriter::write_file(const std::string& path, const std::function<void(SafetensorsOutput&)>& fill) const {
  const std::string partial = partial_path(path);
  create(partial);
  try {
    SafetensorsOutput out(partial);
    fill(out);
    out.sync();
    out.close();
  } catch (...) {
    ::unlink(partial.c_str());
    throw;
  }
  commit_partial(path);
}

void save_safetensors(const std::string& path, const std::vector<TensorToSave>& tensors, DType dtype,
                      const std::map<std::string, std::string>& metadata) {
  SafetensorsWriter w;
  for (const auto& t : tensors) w.add(t.name, dtype, t.shape);
  for (const auto& [k, v] : metadata) w.set_metadata(k, v);
  w.write_file(path, [&](SafetensorsOutput& out) {
    for (size_t i = 0; i < tensors.size(); ++i)
      w.write_f32(out, tensors[i].name, 0, w.tensors()[i].numel(), tensors[i].data);
  });
}

}  // namespace llamaft::io
