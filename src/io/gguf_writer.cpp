// GGUF writing; see gguf_writer.hpp. Every integer is little-endian (the
// only byte order io/gguf.cpp and llama.cpp's default builds read).
#include "io/gguf_writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "core/error.hpp"
#include "core/util.hpp"
#include "io/safetensors.hpp"

namespace llamaft::io {

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read little-endian
constexpr uint32_t kGgufVersion = 3;

template <typename T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

uint64_t align_up(uint64_t n) { return (n + GgufWriter::kAlignment - 1) / GgufWriter::kAlignment * GgufWriter::kAlignment; }

}  // namespace

void GgufWriter::add_raw(const std::string& key, GgufValueType type, std::string payload) {
  LLAMAFT_CHECK(!key.empty() && !has(key), "GGUF writer: metadata key '", key, "' empty or added twice");
  keys_.push_back(key);
  put_string(kv_bytes_, key);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(type));
  kv_bytes_ += payload;
}

bool GgufWriter::has(const std::string& key) const { return std::find(keys_.begin(), keys_.end(), key) != keys_.end(); }

void GgufWriter::add_string(const std::string& key, const std::string& value) {
  std::string p;
  put_string(p, value);
  add_raw(key, GgufValueType::kString, std::move(p));
}
void GgufWriter::add_bool(const std::string& key, bool value) {
  add_raw(key, GgufValueType::kBool, std::string(1, value ? '\1' : '\0'));
}
void GgufWriter::add_u32(const std::string& key, uint32_t value) {
  std::string p;
  put<uint32_t>(p, value);
  add_raw(key, GgufValueType::kUint32, std::move(p));
}
void GgufWriter::add_i32(const std::string& key, int32_t value) {
  std::string p;
  put<int32_t>(p, value);
  add_raw(key, GgufValueType::kInt32, std::move(p));
}
void GgufWriter::add_f32(const std::string& key, float value) {
  std::string p;
  put<float>(p, value);
  add_raw(key, GgufValueType::kFloat32, std::move(p));
}
void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& values) {
  std::string p;
  put<uint32_t>(p, static_cast<uint32_t>(GgufValueType::kString));
  put<uint64_t>(p, values.size());
  for (const auto& s : values) put_string(p, s);
  add_raw(key, GgufValueType::kArray, std::move(p));
}
void GgufWriter::add_f32_array(const std::string& key, const std::vector<float>& values) {
  std::string p;
  put<uint32_t>(p, static_cast<uint32_t>(GgufValueType::kFloat32));
  put<uint64_t>(p, values.size());
  for (float v : values) put<float>(p, v);
  add_raw(key, GgufValueType::kArray, std::move(p));
}
void GgufWriter::add_i32_array(const std::string& key, const std::vector<int32_t>& values) {
  std::string p;
  put<uint32_t>(p, static_cast<uint32_t>(GgufValueType::kInt32));
  put<uint64_t>(p, values.size());
  for (int32_t v : values) put<int32_t>(p, v);
  add_raw(key, GgufValueType::kArray, std::move(p));
}

void GgufWriter::add_tensor(const std::string& name, std::vector<int64_t> ne, uint32_t type) {
  LLAMAFT_CHECK(!ne.empty() && ne.size() <= 4, "GGUF writer: tensor '", name, "' has ", ne.size(), " dimensions");
  for (const auto& t : tensors_) LLAMAFT_CHECK(t.name != name, "GGUF writer: tensor '", name, "' added twice");
  const int64_t bv = ggml_block_values(type), bb = ggml_block_bytes(type);
  LLAMAFT_CHECK(bv > 0 && ne[0] % bv == 0, "GGUF writer: tensor '", name, "': rows of ", ne[0], " are not whole ",
                ggml_type_name(type), " blocks");
  uint64_t numel = 1;
  for (int64_t d : ne) {
    LLAMAFT_CHECK(d > 0, "GGUF writer: tensor '", name, "' has a dimension ", d);
    numel *= static_cast<uint64_t>(d);
  }
  GgufTensorSpec t;
  t.name = name;
  t.ne = std::move(ne);
  t.type = type;
  t.bytes = numel / static_cast<uint64_t>(bv) * static_cast<uint64_t>(bb);
  t.offset = data_bytes_;
  data_bytes_ = align_up(t.offset + t.bytes);
  tensors_.push_back(std::move(t));
}

uint64_t GgufWriter::header_bytes() const {
  uint64_t n = 4 + 4 + 8 + 8 + kv_bytes_.size();
  for (const auto& t : tensors_) n += 8 + t.name.size() + 4 + 8 * t.ne.size() + 4 + 8;
  return align_up(n);
}

uint64_t GgufWriter::file_size() const { return header_bytes() + data_bytes_; }

void GgufWriter::write(const std::string& path, const std::function<void(size_t, uint8_t*)>& fill) const {
  std::string header;
  header.reserve(header_bytes());
  put<uint32_t>(header, kGgufMagic);
  put<uint32_t>(header, kGgufVersion);
  put<uint64_t>(header, tensors_.size());
  put<uint64_t>(header, keys_.size());
  header += kv_bytes_;
  for (const auto& t : tensors_) {
    put_string(header, t.name);
    put<uint32_t>(header, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) put<uint64_t>(header, static_cast<uint64_t>(d));
    put<uint32_t>(header, t.type);
    put<uint64_t>(header, t.offset);
  }
  header.append(header_bytes() - header.size(), '\0');

  const std::string partial = partial_path(path);
  const int fd = open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  LLAMAFT_REQUIRE(fd >= 0, "cannot create '", partial, "': ", std::strerror(errno));
  // Every block reserved now: a full disk fails here, before any data.
  int err = posix_fallocate(fd, 0, static_cast<off_t>(file_size()));
  if (err == EOPNOTSUPP || err == EINVAL) err = ftruncate(fd, static_cast<off_t>(file_size())) == 0 ? 0 : errno;
  ::close(fd);
  if (err != 0) {
    ::unlink(partial.c_str());
    LLAMAFT_FAIL("cannot allocate ", file_size(), " bytes for '", path, "': ", std::strerror(err),
                 "; nothing was written");
  }
  try {
    SafetensorsOutput out(partial);  // a plain pwrite() file; nothing safetensors-specific
    out.pwrite_all(header.data(), header.size(), 0);
    std::unique_ptr<uint8_t[]> buf;
    uint64_t capacity = 0;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const GgufTensorSpec& t = tensors_[i];
      const uint64_t padded = align_up(t.bytes);
      if (padded > capacity) buf.reset(new uint8_t[capacity = padded]);
      std::memset(buf.get() + t.bytes, 0, padded - t.bytes);
      fill(i, buf.get());
      out.pwrite_all(buf.get(), padded, header.size() + t.offset);
    }
    out.sync();
    out.close();
  } catch (...) {
    ::unlink(partial.c_str());
    throw;
  }
  commit_partial(path);
}

}  // namespace llamaft::io
