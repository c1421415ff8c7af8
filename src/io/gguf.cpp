// GGUF reading and dequantization; see gguf.hpp. The file is mapped
// read-only and parsed through one bounds-checked cursor, so a count or a
// length that runs past the end is reported before anything is allocated
// for it. The block decoders follow ggml's dequantize_row_* layouts (ggml-
// quants.c) and gguf-py's operation order; this file is compiled with
// -ffp-contract=off so that `d * q + m` stays two roundings, as in numpy.
#include "io/gguf.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/dtype.hpp"
#include "core/error.hpp"

namespace llamaft::io {

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read little-endian
constexpr int kMaxArrayDepth = 8;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS

// Bounds-checked little-endian reads from the mapping.
class Cursor {
 public:
  Cursor(const uint8_t* base, uint64_t size, const std::string& path) : base_(base), size_(size), path_(path) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  void need(uint64_t n, const char* what) const {
    LLAMAFT_REQUIRE(n <= left(), path_, ": truncated GGUF file: ", what, " at byte ", pos_, " needs ", n,
                    " bytes, only ", left(), " left");
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(base_ + pos_), static_cast<size_t>(n));
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

size_t scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8: case GgufValueType::kInt8: case GgufValueType::kBool: return 1;
    case GgufValueType::kUint16: case GgufValueType::kInt16: return 2;
    case GgufValueType::kUint32: case GgufValueType::kInt32: case GgufValueType::kFloat32: return 4;
    case GgufValueType::kUint64: case GgufValueType::kInt64: case GgufValueType::kFloat64: return 8;
    case GgufValueType::kString: return 8;  // at least its length field
    case GgufValueType::kArray: return 12;  // at least its type and count
  }
  return 1;
}

bool valid_value_type(uint32_t t) { return t <= 12; }

// Reads one scalar of type t into v (v.type already set).
void read_scalar(Cursor& c, GgufValueType t, GgufValue& v, const char* what) {
  switch (t) {
    case GgufValueType::kUint8: v.i = c.read<uint8_t>(what); break;
    case GgufValueType::kInt8: v.i = c.read<int8_t>(what); break;
    case GgufValueType::kUint16: v.i = c.read<uint16_t>(what); break;
    case GgufValueType::kInt16: v.i = c.read<int16_t>(what); break;
    case GgufValueType::kUint32: v.i = c.read<uint32_t>(what); break;
    case GgufValueType::kInt32: v.i = c.read<int32_t>(what); break;
    case GgufValueType::kUint64: v.u = c.read<uint64_t>(what); v.i = static_cast<int64_t>(v.u); break;
    case GgufValueType::kInt64: v.i = c.read<int64_t>(what); break;
    case GgufValueType::kFloat32: v.f = c.read<float>(what); break;
    case GgufValueType::kFloat64: v.f = c.read<double>(what); break;
    case GgufValueType::kBool: v.i = c.read<uint8_t>(what) != 0; break;
    case GgufValueType::kString: v.str = c.read_string(what); break;
    case GgufValueType::kArray: break;
  }
  if (t != GgufValueType::kUint64) v.u = static_cast<uint64_t>(v.i);
}

GgufValue read_value(Cursor& c, GgufValueType t, const std::string& key, const std::string& path, int depth) {
  GgufValue v;
  v.type = t;
  if (t != GgufValueType::kArray) {
    read_scalar(c, t, v, "a metadata value");
    return v;
  }
  LLAMAFT_REQUIRE(depth < kMaxArrayDepth, path, ": metadata '", key, "' nests arrays deeper than ", kMaxArrayDepth);
  const uint32_t et = c.read<uint32_t>("an array's element type");
  LLAMAFT_REQUIRE(valid_value_type(et), path, ": metadata '", key, "' has an array of unknown type ", et);
  v.elem_type = static_cast<GgufValueType>(et);
  const uint64_t n = c.read<uint64_t>("an array's length");
  // Every element takes at least scalar_size bytes: a count the file cannot
  // hold is refused before anything is reserved for it.
  LLAMAFT_REQUIRE(n <= c.left() / scalar_size(v.elem_type), path, ": truncated GGUF file: metadata '", key,
                  "' claims ", n, " array elements but only ", c.left(), " bytes are left");
  for (uint64_t k = 0; k < n; ++k) {
    if (v.elem_type == GgufValueType::kArray) {  // each element: its own element type, count and data
      v.items.push_back(read_value(c, GgufValueType::kArray, key, path, depth + 1));
      continue;
    }
    GgufValue e;
    e.type = v.elem_type;
    read_scalar(c, v.elem_type, e, "an array element");
    if (e.type == GgufValueType::kString) v.strings.push_back(std::move(e.str));
    else if (e.type == GgufValueType::kFloat32 || e.type == GgufValueType::kFloat64) v.floats.push_back(e.f);
    else v.ints.push_back(e.i);
  }
  return v;
}

struct TypeTraits {
  const char* name;
  int64_t block_values;  // 0: unknown size
  int64_t block_bytes;
};

// ggml's type table (ggml.h numbering; removed numbers kept as names).
TypeTraits type_traits(uint32_t t) {
  static const TypeTraits kTable[] = {
      {"F32", 1, 4},      {"F16", 1, 2},        {"Q4_0", 32, 18},   {"Q4_1", 32, 20},    {"Q4_2", 0, 0},
      {"Q4_3", 0, 0},     {"Q5_0", 32, 22},     {"Q5_1", 32, 24},   {"Q8_0", 32, 34},    {"Q8_1", 32, 36},
      {"Q2_K", 256, 84},  {"Q3_K", 256, 110},   {"Q4_K", 256, 144}, {"Q5_K", 256, 176},  {"Q6_K", 256, 210},
      {"Q8_K", 256, 292}, {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74}, {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},
      {"IQ4_NL", 32, 18}, {"IQ3_S", 256, 110},  {"IQ2_S", 256, 82}, {"IQ4_XS", 256, 136}, {"I8", 1, 1},
      {"I16", 1, 2},      {"I32", 1, 4},        {"I64", 1, 8},      {"F64", 1, 8},       {"IQ1_M", 256, 56},
      {"BF16", 1, 2},     {"Q4_0_4_4", 0, 0},   {"Q4_0_4_8", 0, 0}, {"Q4_0_8_8", 0, 0},  {"TQ1_0", 256, 54},
      {"TQ2_0", 256, 66}, {"IQ4_NL_4_4", 0, 0}, {"IQ4_NL_4_8", 0, 0}, {"IQ4_NL_8_8", 0, 0}, {"MXFP4", 32, 17},
  };
  if (t < sizeof(kTable) / sizeof(kTable[0])) return kTable[t];
  return {nullptr, 0, 0};
}

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
float load_f16(const uint8_t* p) { return f16_to_f32(load_u16(p)); }

// ---- block decoders (one block each) -------------------------------------------------

// Q4_0: d(f16) qs[16]; value j = (nibble - 8) * d, low nibbles first.
void dequant_q4_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(static_cast<int>(qs[j] & 0x0F) - 8);
    y[j + 16] = d * static_cast<float>(static_cast<int>(qs[j] >> 4) - 8);
  }
}

// Q4_1: d(f16) m(f16) qs[16]; value = nibble * d + m.
void dequant_q4_1(const uint8_t* b, float* y) {
  const float d = load_f16(b), m = load_f16(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
    y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

// Q5_0: d(f16) qh[4] qs[16]; the fifth bit of value j is bit j of qh;
// value = (q - 16) * d.
void dequant_q5_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int h0 = static_cast<int>((qh >> j) & 1u) << 4, h1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
    y[j] = d * static_cast<float>(((qs[j] & 0x0F) | h0) - 16);
    y[j + 16] = d * static_cast<float>(((qs[j] >> 4) | h1) - 16);
  }
}

// Q8_0: d(f16) qs[32] int8; value = q * d.
void dequant_q8_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(static_cast<int8_t>(b[2 + j]));
}

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block, packed
// in 12 bytes: j < 4 in the low 6 bits of bytes j and j+4; j >= 4 in the
// nibbles of bytes j+4 with their top two bits in the high bits of bytes
// j-4 (scale) and j (min).
void k_scale_min(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q4_K: d(f16) dmin(f16) scales[12] qs[128]; 8 sub-blocks of 32. Each 32
// bytes of qs hold two sub-blocks: low nibbles, then high nibbles.
// value = (d * sc) * q - (dmin * m).
void dequant_q4_k(const uint8_t* b, float* y) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int j = 0; j < 8; j += 2) {
    int sc = 0, m = 0;
    k_scale_min(j, scales, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    k_scale_min(j + 1, scales, &sc, &m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) y[l] = d1 * static_cast<float>(qs[l] & 0x0F) - m1;
    for (int l = 0; l < 32; ++l) y[32 + l] = d2 * static_cast<float>(qs[l] >> 4) - m2;
    y += 64;
    qs += 32;
  }
}

// Q5_K: d dmin scales[12] qh[32] qs[128]; as Q4_K with a fifth bit: bit j of
// qh[l] is the high bit of value l of sub-block j.
void dequant_q5_k(const uint8_t* b, float* y) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int j = 0; j < 8; j += 2) {
    int sc = 0, m = 0;
    k_scale_min(j, scales, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    k_scale_min(j + 1, scales, &sc, &m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l)
      y[l] = d1 * static_cast<float>((qs[l] & 0x0F) | (((qh[l] >> j) & 1) << 4)) - m1;
    for (int l = 0; l < 32; ++l)
      y[32 + l] = d2 * static_cast<float>((qs[l] >> 4) | (((qh[l] >> (j + 1)) & 1) << 4)) - m2;
    y += 64;
    qs += 32;
  }
}

// Q6_K: ql[128] qh[64] scales[16] (int8) d(f16); two halves of 128 values.
// In a half, value l + 32*k (k = 0..3) takes its low 4 bits from ql (l or
// l+32, low nibble for k < 2, high for k >= 2) and bits 4-5 from qh[l] >>
// 2k; minus 32, times (d * scale of its 16-value group).
void dequant_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_f16(b + 208);
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      const int g = l / 16;
      y[l] = (d * static_cast<float>(sc[g + 0])) * static_cast<float>(q1);
      y[l + 32] = (d * static_cast<float>(sc[g + 2])) * static_cast<float>(q2);
      y[l + 64] = (d * static_cast<float>(sc[g + 4])) * static_cast<float>(q3);
      y[l + 96] = (d * static_cast<float>(sc[g + 6])) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

}  // namespace

const char* gguf_value_type_name(GgufValueType t) {
  static const char* kNames[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                 "bool",  "string", "array", "uint64", "int64", "float64"};
  const auto i = static_cast<uint32_t>(t);
  return i < 13 ? kNames[i] : "unknown";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufValueType::kUint8: case GgufValueType::kInt8: case GgufValueType::kUint16: case GgufValueType::kInt16:
    case GgufValueType::kUint32: case GgufValueType::kInt32: case GgufValueType::kUint64: case GgufValueType::kInt64:
      return true;
    default:
      return false;
  }
}

size_t GgufValue::array_size() const {
  if (type != GgufValueType::kArray) return 0;
  return ints.size() + floats.size() + strings.size() + items.size();
}

std::string ggml_type_name(uint32_t type) {
  const TypeTraits t = type_traits(type);
  return t.name ? t.name : "type " + std::to_string(type);
}

bool ggml_type_supported(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32: case GgmlType::kF16: case GgmlType::kBF16: case GgmlType::kQ8_0: case GgmlType::kQ4_0:
    case GgmlType::kQ4_1: case GgmlType::kQ5_0: case GgmlType::kQ4_K: case GgmlType::kQ5_K: case GgmlType::kQ6_K:
      return true;
  }
  return false;
}

int64_t ggml_block_values(uint32_t type) { return type_traits(type).block_values; }
int64_t ggml_block_bytes(uint32_t type) { return type_traits(type).block_bytes; }

void dequantize_gguf_rows(uint32_t type, const uint8_t* src, float* dst, int64_t n) {
  LLAMAFT_REQUIRE(ggml_type_supported(type), "GGUF tensor type ", ggml_type_name(type),
                  " is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K)");
  const int64_t bv = ggml_block_values(type), bb = ggml_block_bytes(type);
  LLAMAFT_CHECK(n % bv == 0, "dequantize: ", n, " values is not a whole number of ", ggml_type_name(type), " blocks");
  const int64_t blocks = n / bv;
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32: std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(n)); return;
    case GgmlType::kF16: for (int64_t i = 0; i < n; ++i) dst[i] = load_f16(src + 2 * i); return;
    case GgmlType::kBF16: for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(src + 2 * i)); return;
    case GgmlType::kQ4_0: for (int64_t k = 0; k < blocks; ++k) dequant_q4_0(src + k * bb, dst + k * bv); return;
    case GgmlType::kQ4_1: for (int64_t k = 0; k < blocks; ++k) dequant_q4_1(src + k * bb, dst + k * bv); return;
    case GgmlType::kQ5_0: for (int64_t k = 0; k < blocks; ++k) dequant_q5_0(src + k * bb, dst + k * bv); return;
    case GgmlType::kQ8_0: for (int64_t k = 0; k < blocks; ++k) dequant_q8_0(src + k * bb, dst + k * bv); return;
    case GgmlType::kQ4_K: for (int64_t k = 0; k < blocks; ++k) dequant_q4_k(src + k * bb, dst + k * bv); return;
    case GgmlType::kQ5_K: for (int64_t k = 0; k < blocks; ++k) dequant_q5_k(src + k * bb, dst + k * bv); return;
    case GgmlType::kQ6_K: for (int64_t k = 0; k < blocks; ++k) dequant_q6_k(src + k * bb, dst + k * bv); return;
  }
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

std::vector<int64_t> GgufTensorInfo::torch_shape() const { return {ne.rbegin(), ne.rend()}; }

GgufFile::GgufFile(const std::string& path) : path_(path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LLAMAFT_REQUIRE(fd >= 0, "cannot open GGUF file '", path, "': ", std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    LLAMAFT_FAIL("'", path, "' is not a regular file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ < 24) {
    ::close(fd);
    LLAMAFT_FAIL(path, ": not a GGUF file (", size_, " bytes, shorter than a GGUF header)");
  }
  void* p = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  LLAMAFT_REQUIRE(p != MAP_FAILED, "cannot map '", path, "': ", std::strerror(err));
  base_ = static_cast<const uint8_t*>(p);
  try {
    parse();
  } catch (...) {
    munmap(const_cast<uint8_t*>(base_), size_);
    base_ = nullptr;
    throw;
  }
}

GgufFile::~GgufFile() {
  if (base_) munmap(const_cast<uint8_t*>(base_), size_);
}

void GgufFile::parse() {
  Cursor c(base_, size_, path_);
  const uint32_t magic = c.read<uint32_t>("the magic");
  LLAMAFT_REQUIRE(magic == kGgufMagic, path_, ": not a GGUF file (the first four bytes are not 'GGUF')");
  version_ = c.read<uint32_t>("the version");
  if (version_ > 0xFFFF && (version_ >> 24) <= 3)
    LLAMAFT_FAIL(path_, ": a big-endian GGUF file; only little-endian GGUF files are supported");
  LLAMAFT_REQUIRE(version_ == 2 || version_ == 3, path_, ": GGUF version ", version_,
                  " is not supported (versions 2 and 3 are)");
  const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
  const uint64_t n_kv = c.read<uint64_t>("the metadata count");
  // A key is at least 8 + 4 + 1 bytes, a tensor info 8 + 4 + 8 + 4 + 8.
  LLAMAFT_REQUIRE(n_kv <= c.left() / 13 && n_tensors <= c.left() / 32, path_, ": truncated or corrupt GGUF header (",
                  n_kv, " metadata entries and ", n_tensors, " tensors cannot fit in ", size_, " bytes)");
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.read_string("a metadata key");
    const uint32_t t = c.read<uint32_t>("a metadata type");
    LLAMAFT_REQUIRE(valid_value_type(t), path_, ": metadata '", key, "' has unknown value type ", t);
    GgufValue v = read_value(c, static_cast<GgufValueType>(t), key, path_, 0);
    LLAMAFT_REQUIRE(kv_index_.emplace(key, kv_.size()).second, path_, ": metadata key '", key, "' appears twice");
    kv_.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = find("general.alignment")) {
    LLAMAFT_REQUIRE(a->is_integer() && a->i > 0 && (a->i & (a->i - 1)) == 0 && a->i <= (1 << 20), path_,
                    ": general.alignment must be a power of two, got ",
                    a->is_integer() ? std::to_string(a->i) : gguf_value_type_name(a->type));
    alignment_ = static_cast<uint64_t>(a->i);
  }
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    t.name = c.read_string("a tensor name");
    const uint32_t n_dims = c.read<uint32_t>("a tensor's dimension count");
    LLAMAFT_REQUIRE(n_dims >= 1 && n_dims <= kMaxDims, path_, ": tensor '", t.name, "' has ", n_dims,
                    " dimensions (1 to ", kMaxDims, " allowed)");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>("a tensor dimension");
      LLAMAFT_REQUIRE(ne > 0 && ne < (uint64_t{1} << 40) && numel <= (uint64_t{1} << 46) / ne, path_, ": tensor '",
                      t.name, "' has an impossible shape (dimension ", d, " = ", ne, ")");
      numel *= ne;
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    t.type = c.read<uint32_t>("a tensor type");
    t.offset = c.read<uint64_t>("a tensor offset");
    const TypeTraits tt = type_traits(t.type);
    LLAMAFT_REQUIRE(tt.name, path_, ": tensor '", t.name, "' has unknown ggml type ", t.type);
    if (tt.block_values > 0) {
      LLAMAFT_REQUIRE(t.ne[0] % tt.block_values == 0, path_, ": tensor '", t.name, "' rows of ", t.ne[0],
                      " values are not whole ", tt.name, " blocks of ", tt.block_values);
      t.bytes = numel / static_cast<uint64_t>(tt.block_values) * static_cast<uint64_t>(tt.block_bytes);
    }
    LLAMAFT_REQUIRE(t.offset % alignment_ == 0, path_, ": tensor '", t.name, "' data offset ", t.offset,
                    " is not a multiple of the alignment ", alignment_);
    LLAMAFT_REQUIRE(tensor_index_.emplace(t.name, tensors_.size()).second, path_, ": tensor '", t.name,
                    "' appears twice");
    tensors_.push_back(std::move(t));
  }
  data_start_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  LLAMAFT_REQUIRE(data_start_ <= size_ || tensors_.empty(), path_, ": truncated GGUF file: no tensor data");
  for (const auto& t : tensors_) {
    const uint64_t avail = size_ > data_start_ ? size_ - data_start_ : 0;
    LLAMAFT_REQUIRE(t.offset <= avail && t.bytes <= avail - t.offset, path_, ": truncated GGUF file: tensor '",
                    t.name, "' (", ggml_type_name(t.type), ", ", t.bytes, " bytes at data offset ", t.offset,
                    ") runs past the end of the file (", avail, " data bytes)");
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  LLAMAFT_REQUIRE(v, path_, ": GGUF metadata '", key, "' is missing");
  LLAMAFT_REQUIRE(v->type == GgufValueType::kString, path_, ": GGUF metadata '", key, "' must be a string, is ",
                  gguf_value_type_name(v->type));
  return v->str;
}
std::string GgufFile::get_string_or(const std::string& key, const std::string& fallback) const {
  return find(key) ? get_string(key) : fallback;
}
int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  LLAMAFT_REQUIRE(v, path_, ": GGUF metadata '", key, "' is missing");
  LLAMAFT_REQUIRE(v->is_integer() && !(v->type == GgufValueType::kUint64 && v->u > (uint64_t{1} << 62)), path_,
                  ": GGUF metadata '", key, "' must be an integer, is ",
                  v->type == GgufValueType::kArray ? "an array (per-layer values are not supported)"
                                                   : gguf_value_type_name(v->type));
  return v->i;
}
int64_t GgufFile::get_int_or(const std::string& key, int64_t fallback) const {
  return find(key) ? get_int(key) : fallback;
}
double GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  LLAMAFT_REQUIRE(v, path_, ": GGUF metadata '", key, "' is missing");
  LLAMAFT_REQUIRE(v->is_number(), path_, ": GGUF metadata '", key, "' must be a number, is ",
                  gguf_value_type_name(v->type));
  return v->is_integer() ? static_cast<double>(v->i) : v->f;
}
double GgufFile::get_float_or(const std::string& key, double fallback) const {
  return find(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool_or(const std::string& key, bool fallback) const {
  const GgufValue* v = find(key);
  if (!v) return fallback;
  LLAMAFT_REQUIRE(v->type == GgufValueType::kBool, path_, ": GGUF metadata '", key, "' must be a bool, is ",
                  gguf_value_type_name(v->type));
  return v->i != 0;
}

const uint8_t* GgufFile::tensor_data(const GgufTensorInfo& t) const { return base_ + data_start_ + t.offset; }

void GgufFile::dequantize(const GgufTensorInfo& t, float* out) const {
  LLAMAFT_REQUIRE(ggml_type_supported(t.type), path_, ": tensor '", t.name, "' is ", ggml_type_name(t.type),
                  ", which llamaft cannot dequantize (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K)");
  const int64_t row = t.ne[0], rows = t.numel() / row;
  const int64_t row_bytes = row / ggml_block_values(t.type) * ggml_block_bytes(t.type);
  const uint8_t* src = tensor_data(t);
#pragma omp parallel for schedule(static) if (rows >= 64)
  for (int64_t r = 0; r < rows; ++r) dequantize_gguf_rows(t.type, src + r * row_bytes, out + r * row, row);
}

}  // namespace llamaft::io
