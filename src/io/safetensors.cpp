#include "io/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/dtype.hpp"
#include "core/error.hpp"

namespace llamaft::io {

namespace {
struct DTypeEntry {
  DType type;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1},
};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }
}  // namespace

size_t dtype_size(DType t) {
  for (const auto& e : kDTypes)
    if (e.type == t) return e.size;
  return 0;
}
const char* dtype_name(DType t) {
  for (const auto& e : kDTypes)
    if (e.type == t) return e.name;
  return "?";
}
DType parse_dtype(const std::string& name, const std::string& what) {
  for (const auto& e : kDTypes)
    if (name == e.name) return e.type;
  LLAMAFT_FAIL(what, ": unknown dtype '", name, "'");
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

const TensorInfo* SafetensorsHeader::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, uint64_t file_size,
                                           const std::string& what) {
  LLAMAFT_REQUIRE(file_size >= 8 && available >= 8, what, ": file is ", file_size,
                  " bytes, too short for a safetensors header (8-byte length + JSON)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian
  LLAMAFT_REQUIRE(n <= kMaxHeaderBytes, what, ": header length ", n, " exceeds the 100 MB limit (corrupt file?)");
  LLAMAFT_REQUIRE(n <= file_size - 8 && n <= available - 8, what, ": header length ", n,
                  " runs past the end of the ", file_size, "-byte file (truncated?)");
  LLAMAFT_REQUIRE(n >= 2 && bytes[8] == '{', what, ": header does not start with a JSON object");
  nlohmann::json j;
  std::string duplicate;
  try {
    std::map<std::string, int> seen;
    auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      if (depth == 1 && event == nlohmann::json::parse_event_t::key && seen[parsed.get<std::string>()]++)
        duplicate = parsed.get<std::string>();
      return true;
    };
    j = nlohmann::json::parse(bytes + 8, bytes + 8 + n, on_event);
  } catch (const std::exception& e) {
    LLAMAFT_FAIL(what, ": header is not valid UTF-8 JSON (", e.what(), ")");
  }
  LLAMAFT_REQUIRE(j.is_object(), what, ": header is not a JSON object");
  LLAMAFT_REQUIRE(duplicate.empty(), what, ": tensor '", duplicate, "' appears twice in the header");

  SafetensorsHeader h;
  h.data_offset = 8 + n;
  const uint64_t data_size = file_size - h.data_offset;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      LLAMAFT_REQUIRE(v.is_object(), what, ": __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        LLAMAFT_REQUIRE(m.value().is_string(), what, ": __metadata__ value for '", m.key(), "' is not a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = what + ": tensor '" + name + "'";
    LLAMAFT_REQUIRE(v.is_object(), where, " must be an object with dtype, shape and data_offsets");
    for (auto f = v.begin(); f != v.end(); ++f)
      LLAMAFT_REQUIRE(f.key() == "dtype" || f.key() == "shape" || f.key() == "data_offsets", where,
                      " has an unknown field '", f.key(), "'");
    LLAMAFT_REQUIRE(v.contains("dtype") && v["dtype"].is_string(), where, ": missing or non-string 'dtype'");
    LLAMAFT_REQUIRE(v.contains("shape") && v["shape"].is_array(), where, ": missing or non-array 'shape'");
    LLAMAFT_REQUIRE(v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2,
                    where, ": 'data_offsets' must be [begin, end]");
    TensorInfo t;
    t.name = name;
    t.dtype = parse_dtype(v["dtype"].get<std::string>(), where);
    uint64_t bytes_needed = dtype_size(t.dtype);
    for (const auto& d : v["shape"]) {
      LLAMAFT_REQUIRE(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), where,
                      ": shape entries must be non-negative integers, got ", d.dump());
      const uint64_t dim = d.get<uint64_t>();
      LLAMAFT_REQUIRE(dim <= static_cast<uint64_t>(INT64_MAX) && !mul_overflows(bytes_needed, dim, &bytes_needed),
                      where, ": shape ", v["shape"].dump(), " overflows 64 bits");
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    for (const auto& o : v["data_offsets"])
      LLAMAFT_REQUIRE(o.is_number_unsigned() || (o.is_number_integer() && o.get<int64_t>() >= 0), where,
                      ": data_offsets must be non-negative integers, got ", o.dump());
    t.begin = v["data_offsets"][0].get<uint64_t>();
    t.end = v["data_offsets"][1].get<uint64_t>();
    LLAMAFT_REQUIRE(t.end >= t.begin, where, ": data_offsets end ", t.end, " < begin ", t.begin);
    LLAMAFT_REQUIRE(t.end <= data_size, where, ": data_offsets [", t.begin, ", ", t.end,
                    ") run past the data section (", data_size, " bytes; truncated file?)");
    LLAMAFT_REQUIRE(bytes_needed == t.end - t.begin, where, ": shape ", shape_str(t.shape), " of ",
                    dtype_name(t.dtype), " needs ", bytes_needed, " bytes but data_offsets span ", t.end - t.begin);
    h.tensors.push_back(std::move(t));
  }
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  for (const auto& t : h.tensors) {
    LLAMAFT_REQUIRE(t.begin == expect, what, ": tensor '", t.name, "' starts at byte ", t.begin, " but ",
                    t.begin < expect ? "overlaps the previous tensor" : "leaves a gap after the previous tensor",
                    " (expected ", expect, "); data_offsets must be contiguous from 0");
    expect = t.end;
  }
  LLAMAFT_REQUIRE(expect == data_size, what, ": tensors cover ", expect, " bytes but the data section has ",
                  data_size, " (", expect < data_size ? "trailing bytes" : "truncated", ")");
  return h;
}

// ---- reading ----------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  struct stat st;
  LLAMAFT_REQUIRE(stat(path.c_str(), &st) == 0, "cannot open '", path, "': ", std::strerror(errno));
  LLAMAFT_REQUIRE(S_ISREG(st.st_mode), "'", path, "' is not a regular file");
  const int fd = open(path.c_str(), O_RDONLY);
  LLAMAFT_REQUIRE(fd >= 0, "cannot open '", path, "': ", std::strerror(errno));
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    LLAMAFT_REQUIRE(p != MAP_FAILED, "cannot mmap '", path, "': ", std::strerror(errno));
    base_ = static_cast<const uint8_t*>(p);
  } else {
    close(fd);
  }
  try {
    header_ = parse_safetensors_header(base_, size_, size_, path);
  } catch (...) {
    if (base_) munmap(const_cast<uint8_t*>(base_), size_);
    base_ = nullptr;
    throw;
  }
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)), base_(o.base_), size_(o.size_), header_(std::move(o.header_)) {
  o.base_ = nullptr;
  o.size_ = 0;
}

SafetensorsFile::~SafetensorsFile() {
  if (base_) munmap(const_cast<uint8_t*>(base_), size_);
}

void SafetensorsFile::read_f32(const TensorInfo& t, int64_t elem_begin, int64_t count, float* out) const {
  LLAMAFT_REQUIRE(elem_begin >= 0 && count >= 0 && elem_begin + count <= t.numel(), path_, ": read of elements [",
                  elem_begin, ", ", elem_begin + count, ") is outside tensor '", t.name, "' (", t.numel(),
                  " elements)");
  const uint8_t* p = data(t) + static_cast<uint64_t>(elem_begin) * dtype_size(t.dtype);
  switch (t.dtype) {
    case DType::F32:
      std::memcpy(out, p, static_cast<size_t>(count) * 4);
      break;
    case DType::BF16:
      for (int64_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = bf16_to_f32(h);
      }
      break;
    case DType::F16:
      for (int64_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = f16_to_f32(h);
      }
      break;
    default:
      LLAMAFT_FAIL(path_, ": tensor '", t.name, "' has dtype ", dtype_name(t.dtype),
                   "; only F32, BF16 and F16 weights can be loaded");
  }
}

// ---- writing ------------------------------------------------------------------------

SafetensorsOutput::SafetensorsOutput(const std::string& path) : path_(path) {
  fd_ = open(path.c_str(), O_WRONLY);
  LLAMAFT_REQUIRE(fd_ >= 0, "cannot open '", path, "' for writing: ", std::strerror(errno));
}
SafetensorsOutput::~SafetensorsOutput() {
  if (fd_ >= 0) close(fd_);
}
void SafetensorsOutput::pwrite_all(const void* data, size_t bytes, uint64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = pwrite(fd_, p, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    LLAMAFT_REQUIRE(n > 0, "write to '", path_, "' failed: ", std::strerror(errno));
    p += n;
    bytes -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}
void SafetensorsOutput::sync() {
  LLAMAFT_REQUIRE(fsync(fd_) == 0, "fsync of '", path_, "' failed: ", std::strerror(errno));
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape) {
  LLAMAFT_CHECK(!index_.count(name), "duplicate tensor ", name);
  TensorInfo t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.begin = data_bytes_;
  t.end = data_bytes_ + static_cast<uint64_t>(t.numel()) * dtype_size(dtype);
  data_bytes_ = t.end;
  index_[name] = tensors_.size();
  tensors_.push_back(std::move(t));
  cached_header_.clear();
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
  cached_header_.clear();
}

std::string SafetensorsWriter::header_json() const {
  if (!cached_header_.empty()) return cached_header_;
  nlohmann::ordered_json j;
  if (!metadata_.empty()) j["__metadata__"] = metadata_;
  for (const auto& t : tensors_)
    j[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {t.begin, t.end}}};
  std::string s = j.dump();
  s.append((8 - s.size() % 8) % 8, ' ');  // data section 8-byte aligned, as safetensors pads
  cached_header_ = s;
  return s;
}

uint64_t SafetensorsWriter::data_offset() const { return 8 + header_json().size(); }
uint64_t SafetensorsWriter::file_size() const { return data_offset() + data_bytes_; }

void SafetensorsWriter::create(const std::string& path) const {
  const std::string header = header_json();
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  LLAMAFT_REQUIRE(fd >= 0, "cannot create '", path, "': ", std::strerror(errno));
  const uint64_t total = 8 + header.size() + data_bytes_;
  if (ftruncate(fd, static_cast<off_t>(total)) != 0) {
    close(fd);
    LLAMAFT_FAIL("cannot size '", path, "' to ", total, " bytes: ", std::strerror(errno));
  }
  close(fd);
  SafetensorsOutput out(path);
  uint8_t len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  out.pwrite_all(len, 8, 0);
  out.pwrite_all(header.data(), header.size(), 8);
}

void SafetensorsWriter::write_f32(SafetensorsOutput& out, const std::string& name, int64_t elem_begin,
                                  int64_t count, const float* src) const {
  auto it = index_.find(name);
  LLAMAFT_CHECK(it != index_.end(), "writer has no tensor ", name);
  const TensorInfo& t = tensors_[it->second];
  LLAMAFT_CHECK(elem_begin >= 0 && count >= 0 && elem_begin + count <= t.numel(), "slice outside ", name);
  const size_t es = dtype_size(t.dtype);
  const uint64_t offset = data_offset() + t.begin + static_cast<uint64_t>(elem_begin) * es;
  if (t.dtype == DType::F32) {
    out.pwrite_all(src, static_cast<size_t>(count) * 4, offset);
    return;
  }
  std::vector<uint16_t> buf(static_cast<size_t>(count));
  LLAMAFT_CHECK(t.dtype == DType::BF16 || t.dtype == DType::F16, "writer supports F32, BF16, F16");
  for (int64_t i = 0; i < count; ++i) buf[i] = t.dtype == DType::BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
  out.pwrite_all(buf.data(), buf.size() * 2, offset);
}

}  // namespace llamaft::io
