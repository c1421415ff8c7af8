// safetensors: round trips through the writer and reader (F32/BF16/F16, and
// slices written by separate calls and separate writers, as FSDP ranks do),
// conversions checked against IEEE bit patterns from the published formats,
// one case per malformed-input rule asserting the message a user would see,
// and Hugging Face directories (single file, 2-shard index, their errors).
#include <gtest/gtest.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "io/hf_tensors.hpp"
#include "io/safetensors.hpp"
#include "model/hf_model.hpp"

namespace llamaft::io {
namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "/llamaft_st_XXXXXX";
    LLAMAFT_CHECK(mkdtemp(tmpl.data()) != nullptr, "mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// 8-byte little-endian length (or `len_override`), header, then data bytes.
std::string file_bytes(const std::string& header, size_t data_bytes, int64_t len_override = -1) {
  std::string s(8, '\0');
  const uint64_t n = len_override >= 0 ? static_cast<uint64_t>(len_override) : header.size();
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  return s + header + std::string(data_bytes, '\x11');
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// EXPECT_ERROR_HAS(phrase, statement...): the statement throws llamaft::Error
// whose message contains phrase.
#define EXPECT_ERROR_HAS(phrase, ...)                                        \
  do {                                                                       \
    const std::string msg_ = error_of([&] { __VA_ARGS__; });                 \
    EXPECT_NE(msg_.find(phrase), std::string::npos) << "message: " << msg_;  \
  } while (0)

// ---- conversions: expected bit patterns come from the IEEE 754 binary16 and
// bfloat16 definitions, not from the code under test ---------------------------

TEST(Dtype, Bf16KnownPatterns) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0x4049), 3.140625f);
  EXPECT_EQ(f32_to_bf16(3.14159265f), 0x4049);
  // 1 + 2^-8 is halfway between 0x3F80 and 0x3F81: ties to even (0x3F80).
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3F80);
  // 1 + 3*2^-8 is halfway between 0x3F81 and 0x3F82: ties to even (0x3F82).
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3F82);
  // Just above the tie rounds up.
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F808001)), 0x3F81);
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7F80);
  EXPECT_EQ(f32_to_bf16(-INFINITY), 0xFF80);
  EXPECT_EQ(f32_to_bf16(from_bits(0x7F7F0000)), 0x7F7F);  // largest finite bf16 stays finite
  EXPECT_EQ(f32_to_bf16(FLT_MAX), 0x7F80);                 // above bf16's range: rounds to inf
  // A signalling NaN whose payload is in the low bits must not truncate to inf.
  EXPECT_EQ(f32_to_bf16(from_bits(0x7F800001)), 0x7FC0);
  EXPECT_EQ(f32_to_bf16(from_bits(0xFF800001)), 0xFFC0);
  EXPECT_EQ(f32_to_bf16(from_bits(0x7FC00000)), 0x7FC0);
  EXPECT_TRUE(std::isnan(bf16_to_f32(0x7FC1)));
  EXPECT_EQ(to_bits(bf16_to_f32(0x0001)), 0x00010000u);  // bf16 subnormal widens exactly
}

TEST(Dtype, Fp16KnownPatterns) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_f16(0.333333333f), 0x3555);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);  // largest half
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7BFF);  // below the halfway point to 65536
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);  // the tie rounds to even: inf
  EXPECT_EQ(f32_to_f16(1e10f), 0x7C00);
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xFC00);
  EXPECT_EQ(f32_to_f16(1.00048828125f), 0x3C00);  // 1 + 2^-11: tie to even
  EXPECT_EQ(f32_to_f16(1.00146484375f), 0x3C02);  // 1 + 3*2^-11: tie to even
  EXPECT_EQ(f32_to_f16(6.103515625e-5f), 0x0400);          // smallest normal 2^-14
  EXPECT_EQ(f32_to_f16(6.097555160522461e-5f), 0x03FF);    // largest subnormal
  EXPECT_EQ(f32_to_f16(5.9604644775390625e-8f), 0x0001);   // smallest subnormal 2^-24
  EXPECT_EQ(f32_to_f16(2.98023223876953125e-8f), 0x0000);  // 2^-25: tie to even (0)
  EXPECT_EQ(f32_to_f16(4.470348358154297e-8f), 0x0001);    // 1.5 * 2^-25
  EXPECT_EQ(f32_to_f16(8.940696716308594e-8f), 0x0002);    // 1.5 * 2^-24: tie to even (2)
  EXPECT_EQ(f32_to_f16(1e-10f), 0x0000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  const uint16_t nan = f32_to_f16(from_bits(0x7F800001));
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), 5.9604644775390625e-8f);
  EXPECT_EQ(f16_to_f32(0x03FF), 6.097555160522461e-5f);
  EXPECT_EQ(f16_to_f32(0x8000), -0.0f);
  EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
  EXPECT_EQ(f16_to_f32(0xFC00), -INFINITY);
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7C01)));
}

TEST(Dtype, EveryFiniteHalfRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (!std::isfinite(f)) continue;
    ASSERT_EQ(f32_to_f16(f), static_cast<uint16_t>(h)) << h;
  }
}

// ---- writer -> reader round trips ----------------------------------------------

SafetensorsWriter three_tensor_writer() {
  SafetensorsWriter w;
  w.add("a", DType::F32, {3, 5});
  w.add("b", DType::BF16, {7});
  w.add("c", DType::F16, {2, 2});
  w.set_metadata("format", "pt");
  return w;
}

TEST(Safetensors, RoundTripAllDtypesAndSlices) {
  TempDir dir;
  const std::string path = dir.file("rt.safetensors");
  const SafetensorsWriter w = three_tensor_writer();
  w.create(path);
  std::vector<float> a(15), b = {1.f, -2.f, 0.5f, 3.f, 1e-3f, -7.25f, 100.f}, c = {0.25f, -1.f, 2.f, 1024.f};
  for (int i = 0; i < 15; ++i) a[i] = 0.1f * i - 0.7f;
  {
    SafetensorsOutput out(path);
    w.write_f32(out, "a", 0, 6, a.data());  // two slices, as two ranks would
    w.write_f32(out, "a", 6, 9, a.data() + 6);
    w.write_f32(out, "c", 0, 4, c.data());
    out.sync();
    out.close();
  }
  // A second, identically built writer (another rank) writes b by path.
  three_tensor_writer().write_f32(path, "b", 4, 3, b.data() + 4);
  three_tensor_writer().write_f32(path, "b", 0, 4, b.data());

  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), w.file_size());
  EXPECT_EQ(w.data_offset() % 8, 0u);

  SafetensorsFile f(path);
  EXPECT_EQ(f.header().data_offset, w.data_offset());
  EXPECT_EQ(f.header().metadata.at("format"), "pt");
  ASSERT_NE(f.header().find("a"), nullptr);
  EXPECT_EQ(f.header().find("a")->shape, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(f.header().find("b")->dtype, DType::BF16);
  EXPECT_EQ(f.header().find("b")->begin, 60u);  // insertion order: after a's 15 floats
  std::vector<float> got(15);
  f.read_f32(*f.header().find("a"), 0, 15, got.data());
  EXPECT_EQ(got, a);
  std::vector<float> slice(3);
  f.read_f32(*f.header().find("a"), 4, 3, slice.data());  // a rank's range
  EXPECT_EQ(slice, std::vector<float>(a.begin() + 4, a.begin() + 7));
  got.resize(7);
  f.read_f32(*f.header().find("b"), 0, 7, got.data());
  const uint16_t b_bits[7] = {0x3F80, 0xC000, 0x3F00, 0x4040, 0x3A83, 0xC0E8, 0x42C8};  // bf16 of b
  for (int i = 0; i < 7; ++i) EXPECT_EQ(got[i], from_bits(static_cast<uint32_t>(b_bits[i]) << 16)) << i;
  got.resize(4);
  f.read_f32(*f.header().find("c"), 0, 4, got.data());
  EXPECT_EQ(got, c);  // all exactly representable in fp16
  uint8_t raw[2];
  f.read_bytes(*f.header().find("c"), 6, 2, raw);
  EXPECT_EQ(raw[0] | (raw[1] << 8), 0x6400);  // 1024 in fp16, little-endian
}

TEST(Safetensors, HeaderLayoutIsDeterministicAndPadded) {
  const std::string h1 = three_tensor_writer().header_json();
  EXPECT_EQ(h1, three_tensor_writer().header_json());
  EXPECT_EQ(h1.size() % 8, 0u);
  EXPECT_EQ(h1.rfind("{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[3,5],"
                     "\"data_offsets\":[0,60]}",
                     0),
            0u)
      << h1;
  EXPECT_EQ(h1.back() == ' ' || h1.back() == '}', true);
  SafetensorsWriter empty;
  EXPECT_EQ(empty.header_json(), "{}      ");
}

TEST(Safetensors, SaveConvenienceAndZeroSizedTensors) {
  TempDir dir;
  const std::string path = dir.file("save.safetensors");
  const std::vector<float> x = {1.5f, -0.25f, 3.f}, none;
  save_safetensors(path, {{"x", {3}, x.data()}, {"empty", {0, 4}, none.data()}, {"y", {1}, x.data()}},
                   DType::F16, {{"k", "v"}});
  SafetensorsFile f(path);
  EXPECT_EQ(f.header().metadata.at("k"), "v");
  std::vector<float> got(3);
  f.read_f32(*f.header().find("x"), 0, 3, got.data());
  EXPECT_EQ(got, x);
  EXPECT_EQ(f.header().find("empty")->numel(), 0);
  f.read_f32(*f.header().find("y"), 0, 1, got.data());
  EXPECT_EQ(got[0], 1.5f);
}

TEST(Safetensors, ReaderErrors) {
  TempDir dir;
  const std::string path = dir.file("r.safetensors");
  three_tensor_writer().create(path);
  SafetensorsFile f(path);
  std::vector<float> out(16);
  const TensorInfo& a = *f.header().find("a");
  EXPECT_ERROR_HAS("outside tensor 'a' (15 elements)", f.read_f32(a, 10, 6, out.data()));
  EXPECT_ERROR_HAS("outside tensor 'a'", f.read_f32(a, -1, 1, out.data()));
  EXPECT_ERROR_HAS("outside tensor 'a'", f.read_f32(a, 1, INT64_MAX, out.data()));
  TensorInfo foreign = a;
  foreign.begin = 1 << 20;
  foreign.end = foreign.begin + 60;
  uint8_t byte;
  EXPECT_ERROR_HAS("outside this file's", f.read_bytes(foreign, 0, 1, &byte));
  EXPECT_ERROR_HAS("outside tensor 'a' (60 bytes)", f.read_bytes(a, 60, 1, &byte));
  // A valid integer tensor is not loadable as weights.
  const std::string ints = dir.file("ints.safetensors");
  write_file(ints, file_bytes(R"({"i":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})", 8));
  SafetensorsFile fi(ints);
  EXPECT_ERROR_HAS("has dtype I32; only F32, BF16 and F16", fi.read_f32(*fi.header().find("i"), 0, 2, out.data()));
  EXPECT_ERROR_HAS("cannot open", SafetensorsFile(dir.file("missing.safetensors")));
  EXPECT_ERROR_HAS("(it is a directory)", SafetensorsFile(dir.path()));
  // Moving keeps the open file usable.
  SafetensorsFile moved = std::move(f);
  moved.read_f32(*moved.header().find("a"), 0, 1, out.data());
  SafetensorsFile assigned(ints);
  assigned = std::move(moved);
  EXPECT_EQ(assigned.header().tensors.size(), 3u);
  // A file cut short after it was opened is a read error naming the byte
  // where it ends (a mapping would have raised SIGBUS here).
  ASSERT_EQ(truncate(path.c_str(), static_cast<off_t>(three_tensor_writer().data_offset() + 8)), 0);
  EXPECT_ERROR_HAS("while 52 more bytes were expected (was the file truncated", assigned.read_f32(*assigned.header().find("a"), 0, 15, out.data()));
}

TEST(Safetensors, WriterRejectsBadTensors) {
  SafetensorsWriter w;
  w.add("a", DType::F32, {2});
  EXPECT_ERROR_HAS("added twice", w.add("a", DType::F32, {2}));
  EXPECT_ERROR_HAS("only F32, BF16 and F16 can be written", w.add("i", DType::I32, {2}));
  EXPECT_ERROR_HAS("negative or overflowing", w.add("n", DType::F32, {-1}));
  EXPECT_ERROR_HAS("invalid tensor name", w.add("__metadata__", DType::F32, {1}));
  EXPECT_ERROR_HAS("not valid UTF-8", w.add("bad\xff", DType::F32, {1}));
  EXPECT_ERROR_HAS("cannot open", SafetensorsOutput("/nonexistent-dir/x.safetensors"));
}

TEST(Safetensors, ParsesFromAHeaderOnlyPrefix) {
  // A rank may read just the first bytes of a large file.
  const std::string bytes = file_bytes(R"({"a":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}})", 0);
  const auto h = parse_safetensors_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                          bytes.size() + 4000, "prefix");
  EXPECT_EQ(h.find("a")->numel(), 1000);
}

// ---- malformed inputs: one case per rule ------------------------------------------

struct BadCase {
  const char* rule;
  std::string bytes;
  const char* phrase;
};

std::vector<BadCase> bad_cases() {
  const std::string ok = R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  return {
      {"shorter_than_8_bytes", "abc", "too short for a safetensors header"},
      {"empty_file", "", "too short"},
      {"header_over_100MB", file_bytes("{}", 0, 200ll << 20), "exceeds the 100 MB limit"},
      {"header_past_end_of_file", file_bytes("{}", 0, 1000), "runs past the end of the 10-byte file"},
      {"header_not_an_object", file_bytes("[1,2]", 0), "does not start with a JSON object"},
      {"header_not_utf8", file_bytes("{\"a\xff\":1}", 0), "header is not valid UTF-8 (byte 11"},
      {"header_overlong_utf8", file_bytes("{\"\xc0\xaf\":1}", 0), "not valid UTF-8"},
      {"header_not_json", file_bytes(R"({"a":{"dtype":"F32",)", 0), "header is not valid JSON"},
      {"header_trailing_garbage", file_bytes("{} x", 0), "runs past the end of its JSON"},
      {"entry_not_object", file_bytes(R"({"a":[1,2]})", 0), "tensor 'a' must be an object"},
      {"entry_missing_dtype", file_bytes(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4), "missing or non-string 'dtype'"},
      {"entry_unknown_field", file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}})", 4),
       "unknown field 'extra'"},
      {"unknown_dtype", file_bytes(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}})", 4),
       "tensor 'a': unknown dtype 'Q4'"},
      {"shape_not_array", file_bytes(R"({"a":{"dtype":"F32","shape":4,"data_offsets":[0,4]}})", 4),
       "non-array 'shape'"},
      {"shape_negative", file_bytes(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
       "shape entries must be non-negative integers, got -1"},
      {"shape_not_integer", file_bytes(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4),
       "shape entries must be non-negative integers"},
      {"shape_nested", file_bytes(R"({"a":{"dtype":"F32","shape":[[[1]]],"data_offsets":[0,4]}})", 4),
       "got a JSON array"},
      {"data_offsets_not_two", file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4),
       "'data_offsets' must be [begin, end]"},
      {"data_offsets_negative", file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4),
       "data_offsets must be non-negative integers"},
      {"end_before_begin", file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4),
       "data_offsets end 0 < begin 4"},
      {"shape_times_dtype_mismatch",
       file_bytes(R"({"a":{"dtype":"BF16","shape":[384,128],"data_offsets":[0,4096]}})", 4096),
       "tensor 'a': shape [384, 128] of BF16 needs 98304 bytes but data_offsets span 4096"},
      {"shape_overflow", file_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4),
       "overflows 64 bits"},
      {"shape_times_dtype_overflow",
       file_bytes(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}})", 4),
       "of F64 overflows 64 bits"},
      {"offsets_not_from_zero", file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
       "leaves a gap"},
      {"offsets_gap",
       file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                  12),
       "tensor 'b' starts at byte 8 but leaves a gap after the previous tensor (expected 4)"},
      {"offsets_overlap",
       file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                  8),
       "'b' starts at byte 4 but overlaps the previous tensor"},
      {"data_past_end_of_file", file_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
       "run past the data section (8 bytes; truncated file?)"},
      {"trailing_bytes_after_data", file_bytes("{" + ok + "}", 12),
       "tensors cover 4 bytes but the data section has 12 (trailing bytes)"},
      {"metadata_not_object", file_bytes(R"({"__metadata__":[1]})", 0), "__metadata__ must be an object of strings"},
      {"metadata_value_not_string", file_bytes(R"({"__metadata__":{"k":1}})", 0),
       "__metadata__ value for 'k' is not a string"},
      {"duplicate_tensor", file_bytes("{" + ok + "," + ok + "}", 4), "tensor 'a' appears twice"},
      {"duplicate_field",
       file_bytes(R"({"a":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}})", 4),
       "entry 'a' has the key 'dtype' twice"},
  };
}

class MalformedSafetensors : public ::testing::TestWithParam<BadCase> {};

TEST_P(MalformedSafetensors, IsRejectedWithAClearMessage) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  write_file(path, GetParam().bytes);
  const std::string msg = error_of([&] { SafetensorsFile f(path); });
  EXPECT_NE(msg.find(GetParam().phrase), std::string::npos) << "expected: " << GetParam().phrase
                                                            << "\nmessage:  " << msg;
  EXPECT_EQ(msg.rfind(path + ": ", 0) == 0 || msg.find("'" + path + "'") != std::string::npos, true)
      << "the message must name the file: " << msg;
}

INSTANTIATE_TEST_SUITE_P(Rules, MalformedSafetensors, ::testing::ValuesIn(bad_cases()),
                         [](const ::testing::TestParamInfo<BadCase>& info) { return std::string(info.param.rule); });

// ---- Hugging Face directories -----------------------------------------------------

void write_shard(const std::string& path, const std::string& name, float first) {
  const float v[2] = {first, -1.f};
  save_safetensors(path, {{name, {2}, v}}, DType::BF16);
}

TEST(HfTensorSet, TwoShardIndex) {
  TempDir dir;
  write_shard(dir.file("model-00001-of-00002.safetensors"), "model.x", 1.f);
  write_shard(dir.file("model-00002-of-00002.safetensors"), "model.y", 2.f);
  std::ofstream(dir.file("model.safetensors.index.json"))
      << R"({"metadata":{"total_size":8},"weight_map":{"model.x":"model-00001-of-00002.safetensors",)"
      << R"("model.y":"model-00002-of-00002.safetensors"}})";
  HfTensorSet set(dir.path());
  EXPECT_TRUE(set.has("model.x") && set.has("model.y"));
  EXPECT_FALSE(set.has("model.z"));
  EXPECT_EQ(set.names(), (std::vector<std::string>{"model.x", "model.y"}));
  EXPECT_EQ(set.info("model.y").dtype, DType::BF16);
  float v[2];
  set.read_f32("model.y", 0, 2, v);
  EXPECT_EQ(v[0], 2.f);
  EXPECT_EQ(v[1], -1.f);
  set.read_f32("model.x", 1, 1, v);
  EXPECT_EQ(v[0], -1.f);
  EXPECT_ERROR_HAS("no tensor named 'model.z'", set.info("model.z"));
  EXPECT_ERROR_HAS("nearest names: 'model.y'", set.info("model.z"));
  EXPECT_ERROR_HAS("outside tensor 'model.x'", set.read_f32("model.x", 0, 3, v));
}

TEST(HfTensorSet, SingleFile) {
  TempDir dir;
  write_shard(dir.file("model.safetensors"), "w", 3.f);
  HfTensorSet set(dir.path());
  EXPECT_EQ(set.names(), std::vector<std::string>{"w"});
  EXPECT_ERROR_HAS(dir.path() + ": no tensor named 'v'", set.info("v"));
}

TEST(HfTensorSet, IndexAndDirectoryErrors) {
  TempDir dir;
  write_shard(dir.file("s1.safetensors"), "x", 1.f);
  write_shard(dir.file("s2.safetensors"), "y", 2.f);
  const std::string index = dir.file("model.safetensors.index.json");
  std::ofstream(index) << R"({"weight_map":{"x":"s2.safetensors"}})";
  EXPECT_ERROR_HAS("maps 'x' to 's2.safetensors', but that file has no such tensor", HfTensorSet s(dir.path()));
  std::ofstream(index) << R"({"weight_map":{"x":"nope.safetensors"}})";
  EXPECT_ERROR_HAS("which does not exist", HfTensorSet s(dir.path()));
  std::ofstream(index) << R"({"weight_map":{"x":"../s1.safetensors"}})";
  EXPECT_ERROR_HAS("must be a plain file name", HfTensorSet s(dir.path()));
  std::ofstream(index) << R"({"weight_map":{"x":1}})";
  EXPECT_ERROR_HAS("is not a file name", HfTensorSet s(dir.path()));
  std::ofstream(index) << R"({"weights":{}})";
  EXPECT_ERROR_HAS("missing the 'weight_map' object", HfTensorSet s(dir.path()));
  std::ofstream(index) << R"({"weight_map":)";
  EXPECT_ERROR_HAS("model.safetensors.index.json: not valid JSON", HfTensorSet s(dir.path()));
  write_file(dir.file("s3.safetensors"), "garbage!garbage!");
  std::ofstream(index) << R"({"weight_map":{"x":"s3.safetensors"}})";
  EXPECT_ERROR_HAS("s3.safetensors: header length", HfTensorSet s(dir.path()));
  std::remove(index.c_str());
  EXPECT_ERROR_HAS("has neither model.safetensors nor model.safetensors.index.json", HfTensorSet s(dir.path()));
  EXPECT_ERROR_HAS("found '", HfTensorSet s(dir.path()));
  EXPECT_ERROR_HAS("does not exist", HfTensorSet s(dir.file("missing")));
  EXPECT_ERROR_HAS("is not a directory", HfTensorSet s(dir.file("s1.safetensors")));
  TempDir empty;
  EXPECT_ERROR_HAS("no *.safetensors files at all", HfTensorSet s(empty.path()));
}

// A model whose safetensors disagree with config.json: the error names the
// tensor and both shapes.
TEST(HfModel, ShapeMismatchNamesTensorAndShapes) {
  LlamaConfig cfg = preset_config("tiny");
  TempDir tmp;
  const std::string dir = tmp.file("mismatch");
  ParamLayout layout(cfg);
  save_hf_model(dir, cfg, layout, false, [](const TensorSlot& s, float* out) {
    std::fill(out, out + s.numel(), 0.5f);
  });
  LlamaConfig wrong = cfg;
  wrong.intermediate_size = 256;
  save_model_config(dir, wrong, false);
  auto be = make_cpu_backend();
  ParamLayout wrong_layout(wrong);
  ResidentParams params(*be, wrong_layout);
  const std::string msg = error_of([&] { load_hf_weights(dir, wrong_layout, *be, params); });
  EXPECT_NE(msg.find("mlp.gate_proj.weight' has shape [384, 128] but config.json implies [256, 128]"),
            std::string::npos)
      << msg;
}

TEST(HfModel, MissingAndUnexpectedTensors) {
  LlamaConfig cfg = preset_config("tiny");
  TempDir tmp;
  const std::string dir = tmp.file("untied_as_tied");
  save_hf_model(dir, cfg, ParamLayout(cfg), false, [](const TensorSlot& s, float* out) {
    std::fill(out, out + s.numel(), 0.f);
  });
  auto be = make_cpu_backend();
  // config says 5 layers, file has 4: layer 4 is missing.
  LlamaConfig more = cfg;
  more.num_hidden_layers = 5;
  ParamLayout more_layout(more);
  ResidentParams p1(*be, more_layout);
  EXPECT_NE(error_of([&] { load_hf_weights(dir, more_layout, *be, p1); })
                .find("'model.layers.4.input_layernorm.weight' is missing"),
            std::string::npos);
  // config says 3 layers, file has 4: layer 3 is unexpected.
  LlamaConfig fewer = cfg;
  fewer.num_hidden_layers = 3;
  ParamLayout fewer_layout(fewer);
  ResidentParams p2(*be, fewer_layout);
  EXPECT_NE(error_of([&] { load_hf_weights(dir, fewer_layout, *be, p2); }).find("unexpected tensor 'model.layers.3."),
            std::string::npos);
}

// init.max_shard_size follows transformers' convert_file_size_to_int.
TEST(HfModel, ShardSizeParsesAsTransformersDoes) {
  EXPECT_EQ(parse_shard_size("5GB", "k"), 5000000000u);
  EXPECT_EQ(parse_shard_size("2GiB", "k"), uint64_t{2} << 30);
  EXPECT_EQ(parse_shard_size("300KB", "k"), 300000u);
  EXPECT_EQ(parse_shard_size("1.5MiB", "k"), 1572864u);
  EXPECT_EQ(parse_shard_size("4096", "k"), 4096u);
  EXPECT_EQ(parse_shard_size("0", "k"), 0u);
  EXPECT_EQ(parse_shard_size("", "k"), 0u);
  EXPECT_ERROR_HAS("init.max_shard_size = '5XB' is not a size", parse_shard_size("5XB", "init.max_shard_size"));
  EXPECT_ERROR_HAS("is not a size", parse_shard_size("GB", "k"));
  EXPECT_ERROR_HAS("is not a size", parse_shard_size("-1GB", "k"));
}

// A sharded write holds the same tensors as one file, split as
// save_pretrained splits (in order, a new file when the next tensor would
// overflow, an oversized tensor alone), with an index whose total_size is
// the data bytes; writing one file into the same folder removes the shards.
TEST(HfModel, ShardedSaveMatchesOneFile) {
  const LlamaConfig cfg = preset_config("tiny");
  const ParamLayout layout(cfg);
  auto fill = [](const TensorSlot& s, float* out) {
    for (int64_t i = 0; i < s.numel(); ++i) out[i] = static_cast<float>(s.hf_name.size() % 7) + 1e-3f * (i % 977);
  };
  TempDir tmp;
  const std::string one = tmp.file("one"), many = tmp.file("many");
  const uint64_t max = 100000;
  save_hf_model(one, cfg, layout, false, fill);
  save_hf_model(many, cfg, layout, false, fill, max);
  std::ifstream in(many + "/model.safetensors.index.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json index = nlohmann::json::parse(in);
  std::map<std::string, uint64_t> shard_bytes;
  uint64_t total = 0;
  std::string previous_file;
  for (const auto& u : layout.units()) {
    if (u.kind == UnitKind::kLora) continue;
    for (const auto& t : u.tensors) {
      const std::string file = index["weight_map"].at(t.hf_name).get<std::string>();
      EXPECT_GE(file, previous_file) << "tensors must stay in layout order across the shards";
      previous_file = file;
      shard_bytes[file] += static_cast<uint64_t>(t.numel()) * 4;
      total += static_cast<uint64_t>(t.numel()) * 4;
    }
  }
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  ASSERT_GT(shard_bytes.size(), 2u);
  char expect_name[64];
  std::snprintf(expect_name, sizeof(expect_name), "model-00001-of-%05zu.safetensors", shard_bytes.size());
  EXPECT_EQ(shard_bytes.begin()->first, expect_name);
  for (const auto& [file, bytes] : shard_bytes) {
    EXPECT_TRUE(bytes <= max || SafetensorsFile(many + "/" + file).header().tensors.size() == 1) << file;
  }
  EXPECT_FALSE(std::ifstream(many + "/model.safetensors").good());
  auto be = make_cpu_backend();
  ResidentParams a(*be, layout), b(*be, layout);
  load_hf_weights(one, layout, *be, a);
  load_hf_weights(many, layout, *be, b);
  for (int u = 0; u < layout.num_units(); ++u) {
    if (layout.units()[u].kind == UnitKind::kLora) continue;
    const size_t n = static_cast<size_t>(layout.units()[u].numel);
    EXPECT_EQ(std::memcmp(a.params(u), b.params(u), n * sizeof(float)), 0) << "unit " << u;
  }
  // One file over the sharded folder: the index and shards go, the loader
  // reads the new file.
  save_hf_model(many, cfg, layout, false, fill);
  EXPECT_FALSE(std::ifstream(many + "/model.safetensors.index.json").good());
  EXPECT_FALSE(std::ifstream(many + "/" + std::string(expect_name)).good());
  ResidentParams c(*be, layout);
  load_hf_weights(many, layout, *be, c);
}

}  // namespace
}  // namespace llamaft::io
