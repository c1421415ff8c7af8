// safetensors reading: dtype table, the validating header parser and the
// pread reader. The parser is the fuzzed surface (tests/fuzz): it never reads
// past `available`, never recurses over attacker-controlled depth (values
// are described by type, not dumped, in messages) and reports every rule
// violation as one llamaft::Error sentence naming the file and the tensor.
#include "io/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/util.hpp"

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

// Offset of the first byte that is not well-formed UTF-8 (no overlongs, no
// surrogates, nothing above U+10FFFF), or n if all are.
size_t first_invalid_utf8(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if ((s[i + k] & 0xC0) != 0x80) return i;
    i += len;
  }
  return n;
}

bool is_nonneg_int(const nlohmann::json& v) {
  return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
}

std::string describe(const nlohmann::json& v) {
  if (v.is_number() || v.is_boolean() || v.is_null()) return v.dump();
  return std::string("a JSON ") + v.type_name();
}

// Parses JSON, recording the first key repeated within one object (nlohmann
// would silently keep the last). Returns false and fills `error` on bad JSON.
struct DuplicateKey {
  std::string tensor;  // top-level key it was found under (or the key itself)
  std::string key;
  int depth = 0;
};
bool parse_json(const uint8_t* p, size_t n, nlohmann::json* out, DuplicateKey* dup, std::string* error) {
  std::vector<std::set<std::string>> open_objects;
  std::string top_key;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) {
      open_objects.emplace_back();
    } else if (event == E::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == E::key && !open_objects.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (depth == 1) top_key = k;
      if (!open_objects.back().insert(k).second && dup->depth == 0) *dup = {top_key, k, depth};
    }
    return true;
  };
  try {
    *out = nlohmann::json::parse(p, p + n, on_event);
    return true;
  } catch (const nlohmann::json::exception& e) {
    *error = e.what();
    if (error->size() > 200) *error = error->substr(0, 200) + "...";
    return false;
  }
}

// The length of the complete JSON object at the start of p[0, limit) when
// more than whitespace follows it (in the limit, or, with more_follows,
// beyond it), else 0. Only for messages about a header length that runs past
// its JSON.
size_t complete_json_object_end(const uint8_t* p, size_t limit, bool more_follows) {
  int64_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < limit; ++i) {
    const uint8_t c = p[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) {
        size_t rest = i + 1;
        while (rest < limit && (p[rest] == ' ' || p[rest] == '\t' || p[rest] == '\n' || p[rest] == '\r')) ++rest;
        return (rest < limit || more_follows) && nlohmann::json::accept(p, p + i + 1) ? i + 1 : 0;
      }
    }
  }
  return 0;
}

void validate_entry_fields(const nlohmann::json& v, const std::string& where) {
  LLAMAFT_REQUIRE(v.is_object(), where, " must be an object with dtype, shape and data_offsets, got ",
                  describe(v));
  for (auto f = v.begin(); f != v.end(); ++f)
    LLAMAFT_REQUIRE(f.key() == "dtype" || f.key() == "shape" || f.key() == "data_offsets", where,
                    " has an unknown field '", f.key(), "' (allowed: dtype, shape, data_offsets)");
  LLAMAFT_REQUIRE(v.contains("dtype") && v["dtype"].is_string(), where, ": missing or non-string 'dtype'");
  LLAMAFT_REQUIRE(v.contains("shape") && v["shape"].is_array(), where, ": missing or non-array 'shape'");
  LLAMAFT_REQUIRE(v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2,
                  where, ": 'data_offsets' must be [begin, end]");
}

TensorInfo parse_entry(const std::string& name, const nlohmann::json& v, uint64_t data_size,
                       const std::string& what) {
  const std::string where = what + ": tensor '" + name + "'";
  validate_entry_fields(v, where);
  TensorInfo t;
  t.name = name;
  t.dtype = parse_dtype(v["dtype"].get<std::string>(), where);
  // numel with checked multiplication (int64, so numel() can never overflow),
  // then bytes = numel * dtype size, also checked.
  int64_t numel = 1;
  for (const auto& d : v["shape"]) {
    LLAMAFT_REQUIRE(is_nonneg_int(d), where, ": shape entries must be non-negative integers, got ", describe(d));
    const uint64_t dim = d.get<uint64_t>();
    LLAMAFT_REQUIRE(dim <= static_cast<uint64_t>(INT64_MAX) &&
                        !__builtin_mul_overflow(numel, static_cast<int64_t>(dim), &numel),
                    where, ": shape ", shape_str(t.shape), " x ", dim, "... overflows 64 bits");
    t.shape.push_back(static_cast<int64_t>(dim));
  }
  uint64_t bytes_needed = 0;
  LLAMAFT_REQUIRE(!__builtin_mul_overflow(static_cast<uint64_t>(numel), dtype_size(t.dtype), &bytes_needed), where,
                  ": shape ", shape_str(t.shape), " of ", dtype_name(t.dtype), " overflows 64 bits");
  for (const auto& o : v["data_offsets"])
    LLAMAFT_REQUIRE(is_nonneg_int(o), where, ": data_offsets must be non-negative integers, got ", describe(o));
  t.begin = v["data_offsets"][0].get<uint64_t>();
  t.end = v["data_offsets"][1].get<uint64_t>();
  LLAMAFT_REQUIRE(t.end >= t.begin, where, ": data_offsets end ", t.end, " < begin ", t.begin);
  LLAMAFT_REQUIRE(t.end <= data_size, where, ": data_offsets [", t.begin, ", ", t.end,
                  ") run past the data section (", data_size, " bytes; truncated file?)");
  LLAMAFT_REQUIRE(bytes_needed == t.end - t.begin, where, ": shape ", shape_str(t.shape), " of ",
                  dtype_name(t.dtype), " needs ", bytes_needed, " bytes but data_offsets span ", t.end - t.begin);
  return t;
}
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
  LLAMAFT_FAIL(what, what.empty() ? "" : ": ", "unknown dtype '", name,
               "' (known: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
}

int64_t TensorInfo::numel() const {
  uint64_t n = 1;  // unsigned: wraps instead of UB on a hand-built bad shape
  for (auto d : shape) n *= static_cast<uint64_t>(d);
  return static_cast<int64_t>(n);
}

const TensorInfo* SafetensorsHeader::find(const std::string& name) const {
  auto it = by_name.find(name);
  return it == by_name.end() ? nullptr : &tensors[it->second];
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, uint64_t file_size,
                                           const std::string& what) {
  LLAMAFT_REQUIRE(file_size >= 8 && available >= 8, what, ": file is ", file_size,
                  " bytes, too short for a safetensors header (8-byte length + JSON)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian
  LLAMAFT_REQUIRE(n <= kMaxHeaderBytes, what, ": header length ", n,
                  " exceeds the 100 MB limit (corrupt file, or not a safetensors file?)");
  LLAMAFT_REQUIRE(n <= file_size - 8 && n <= available - 8, what, ": header length ", n,
                  " runs past the end of the ", file_size, "-byte file (truncated?)");
  const uint8_t* json_bytes = bytes + 8;
  LLAMAFT_REQUIRE(n >= 2 && json_bytes[0] == '{', what, ": header does not start with a JSON object ('{')");
  const size_t bad = first_invalid_utf8(json_bytes, n);
  // A length field larger than the JSON it measures takes tensor bytes into
  // the header: say so, rather than blaming their encoding or syntax.
  const auto require_length_fits = [&](size_t limit) {
    const size_t end = complete_json_object_end(json_bytes, limit, limit < n);
    LLAMAFT_REQUIRE(end == 0, what, ": header length ", n, " runs past the end of its JSON, which ends at byte ",
                    8 + end, " of the file (a wrong length field: corrupt or hand-edited file?)");
  };
  if (bad < n) require_length_fits(bad);
  LLAMAFT_REQUIRE(bad == n, what, ": header is not valid UTF-8 (byte ", 8 + bad, " of the file)");

  nlohmann::json j;
  DuplicateKey dup;
  std::string json_error;
  if (!parse_json(json_bytes, n, &j, &dup, &json_error)) {
    require_length_fits(n);
    LLAMAFT_FAIL(what, ": header is not valid JSON (", json_error, ")");
  }
  LLAMAFT_REQUIRE(j.is_object(), what, ": header is not a JSON object");
  LLAMAFT_REQUIRE(dup.depth != 1, what, ": tensor '", dup.key, "' appears twice in the header");
  LLAMAFT_REQUIRE(dup.depth == 0, what, ": entry '", dup.tensor, "' has the key '", dup.key, "' twice");

  SafetensorsHeader h;
  h.data_offset = 8 + n;
  const uint64_t data_size = file_size - h.data_offset;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& v = it.value();
    if (it.key() == "__metadata__") {
      LLAMAFT_REQUIRE(v.is_object(), what, ": __metadata__ must be an object of strings, got ", describe(v));
      for (auto m = v.begin(); m != v.end(); ++m) {
        LLAMAFT_REQUIRE(m.value().is_string(), what, ": __metadata__ value for '", m.key(),
                        "' is not a string (got ", describe(m.value()), ")");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    h.tensors.push_back(parse_entry(it.key(), v, data_size, what));
  }
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const TensorInfo& t = h.tensors[i];
    LLAMAFT_REQUIRE(t.begin == expect, what, ": tensor '", t.name, "' starts at byte ", t.begin, " but ",
                    t.begin < expect ? "overlaps the previous tensor" : "leaves a gap after the previous tensor",
                    " (expected ", expect, "); data_offsets must be contiguous from 0");
    expect = t.end;
    h.by_name[t.name] = i;
  }
  LLAMAFT_REQUIRE(expect == data_size, what, ": tensors cover ", expect, " bytes but the data section has ",
                  data_size, " (", expect < data_size ? "trailing bytes" : "truncated",
                  "); the data must exactly fill the file");
  return h;
}

// ---- reading ----------------------------------------------------------------------
//
// pread() into bounded buffers, never a mapping of the file: the bytes a rank
// reads pass through the page cache (reclaimable, not the process's RSS) into
// its own staging, so a 16 GB checkpoint read at np = 1 costs its staging
// buffer and not 16 GB of file-backed resident pages, and a file truncated
// under a running job is a read error instead of SIGBUS.

namespace {

constexpr size_t kReadChunkBytes = size_t{4} << 20;  // converted reads go through a buffer this size

// Reads exactly n bytes at `offset` or throws (EINTR and short reads retried).
void pread_exactly(int fd, void* dst, size_t n, uint64_t offset, const std::string& path) {
  uint64_t done = 0;
  const int rc = pread_full(fd, dst, n, offset, &done);
  LLAMAFT_REQUIRE(rc <= 0, "cannot read '", path, "' at byte ", offset + done, ": ", std::strerror(rc));
  LLAMAFT_REQUIRE(rc == 0, "'", path, "' ends at byte ", offset + done, " while ", n - done,
                  " more bytes were expected (was the file truncated or replaced while the job ran?)");
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LLAMAFT_REQUIRE(fd_ >= 0, "cannot open '", path, "': ", std::strerror(errno));
  try {
    struct stat st;
    LLAMAFT_REQUIRE(fstat(fd_, &st) == 0, "cannot stat '", path, "': ", std::strerror(errno));
    LLAMAFT_REQUIRE(S_ISREG(st.st_mode), "'", path, "' is not a regular file",
                    S_ISDIR(st.st_mode) ? " (it is a directory)" : "", "; expected a .safetensors file");
    size_ = static_cast<uint64_t>(st.st_size);
    // The 8-byte length, then as much of the header as it claims (bounded by
    // the file and by kMaxHeaderBytes; the parser reports either excess).
    std::vector<uint8_t> head(static_cast<size_t>(std::min<uint64_t>(size_, 8)));
    pread_exactly(fd_, head.data(), head.size(), 0, path);
    if (head.size() == 8) {
      uint64_t n = 0;
      std::memcpy(&n, head.data(), 8);
      const uint64_t want = std::min<uint64_t>({n, kMaxHeaderBytes, size_ - 8});
      head.resize(static_cast<size_t>(8 + want));
      pread_exactly(fd_, head.data() + 8, static_cast<size_t>(want), 8, path);
    }
    header_ = parse_safetensors_header(head.data(), head.size(), size_, path);
    // The loaders read each tensor front to back: ask for a large readahead.
    (void)posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
  } catch (...) {
    close_fd();
    throw;
  }
}

void SafetensorsFile::close_fd() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)), fd_(o.fd_), size_(o.size_), header_(std::move(o.header_)) {
  o.fd_ = -1;
  o.size_ = 0;
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    close_fd();
    path_ = std::move(o.path_);
    header_ = std::move(o.header_);
    fd_ = o.fd_;
    size_ = o.size_;
    o.fd_ = -1;
    o.size_ = 0;
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { close_fd(); }

void SafetensorsFile::read_bytes(const TensorInfo& t, uint64_t byte_begin, size_t n, void* out) const {
  // Guards against a TensorInfo from another file or built by hand.
  const uint64_t data_size = size_ >= header_.data_offset ? size_ - header_.data_offset : 0;
  LLAMAFT_REQUIRE(fd_ >= 0 && t.begin <= t.end && t.end <= data_size, path_, ": tensor '", t.name, "' bytes [",
                  t.begin, ", ", t.end, ") are outside this file's ", data_size, "-byte data section");
  LLAMAFT_REQUIRE(byte_begin <= t.end - t.begin && n <= t.end - t.begin - byte_begin, path_, ": read of ", n,
                  " bytes at ", byte_begin, " is outside tensor '", t.name, "' (", t.end - t.begin, " bytes)");
  pread_exactly(fd_, out, n, header_.data_offset + t.begin + byte_begin, path_);
}

void SafetensorsFile::prefetch(const TensorInfo& t, int64_t elem_begin, int64_t count) const {
  const uint64_t es = dtype_size(t.dtype);
  if (fd_ < 0 || elem_begin < 0 || count <= 0) return;
  const uint64_t first = header_.data_offset + t.begin + static_cast<uint64_t>(elem_begin) * es;
  advise_willneed(fd_, first, static_cast<uint64_t>(count) * es);
}

void SafetensorsFile::read_f32(const TensorInfo& t, int64_t elem_begin, int64_t count, float* out) const {
  const int64_t numel = t.numel();
  LLAMAFT_REQUIRE(elem_begin >= 0 && count >= 0 && elem_begin <= numel && count <= numel - elem_begin, path_,
                  ": read of ", count, " elements at ", elem_begin, " is outside tensor '", t.name, "' (", numel,
                  " elements)");
  const uint64_t es = dtype_size(t.dtype);
  LLAMAFT_REQUIRE(static_cast<uint64_t>(numel) * es == t.end - t.begin, path_, ": tensor '", t.name,
                  "' metadata is inconsistent with its byte range");
  const uint64_t first = static_cast<uint64_t>(elem_begin) * es;
  switch (t.dtype) {
    case DType::F32:  // straight into the caller's buffer
      read_bytes(t, first, static_cast<size_t>(count) * 4, out);
      return;
    case DType::BF16:
    case DType::F16: {
      const bool bf16 = t.dtype == DType::BF16;
      std::vector<uint16_t> buf(static_cast<size_t>(std::min<int64_t>(count, kReadChunkBytes / 2)));
      for (int64_t done = 0; done < count;) {
        const int64_t n = std::min<int64_t>(count - done, static_cast<int64_t>(buf.size()));
        read_bytes(t, first + static_cast<uint64_t>(done) * 2, static_cast<size_t>(n) * 2, buf.data());
        float* dst = out + done;
        if (bf16)
          for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(buf[static_cast<size_t>(i)]);
        else
          for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(buf[static_cast<size_t>(i)]);
        done += n;
      }
      return;
    }
    default:
      LLAMAFT_FAIL(path_, ": tensor '", t.name, "' has dtype ", dtype_name(t.dtype),
                   "; only F32, BF16 and F16 tensors can be loaded as weights");
  }
}

}  // namespace llamaft::io
