// safetensors: round trips through the writer and reader (F32/BF16/F16, and
// slices written by separate calls as FSDP ranks do), conversions checked
// against IEEE bit patterns from the published formats, and one test per
// malformed-header rule, each asserting the message a user would see.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "io/hf_tensors.hpp"
#include "io/safetensors.hpp"
#include "model/hf_model.hpp"

namespace llamaft::io {
namespace {

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "/st_" + name; }

std::string raw_file(const std::string& header, size_t data_bytes, const std::string& name) {
  const std::string path = temp_path(name);
  std::ofstream f(path, std::ios::binary);
  uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << header;
  f << std::string(data_bytes, '\0');
  return path;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

void expect_rejected(const std::string& header, size_t data_bytes, const std::string& phrase) {
  const std::string path = raw_file(header, data_bytes, "bad.safetensors");
  const std::string msg = error_of([&] { SafetensorsFile f(path); });
  EXPECT_NE(msg.find(phrase), std::string::npos) << "header " << header << "\nmessage: " << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << "the message must name the file: " << msg;
}

TEST(Dtype, Bf16BitPatterns) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3F80);
  // 1 + 3*2^-8 is halfway between 0x3F81 and 0x3F82: ties to even (0x3F82).
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3F82);
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7F80);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  EXPECT_EQ(f32_to_bf16(3.3895313892515355e38f), 0x7F7F);  // largest finite bf16 stays finite
}

TEST(Dtype, Fp16BitPatterns) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);         // largest half
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);         // rounds to inf
  EXPECT_EQ(f32_to_f16(5.9604644775390625e-8f), 0x0001);  // smallest subnormal 2^-24
  EXPECT_EQ(f32_to_f16(6.103515625e-5f), 0x0400);  // smallest normal 2^-14
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  EXPECT_EQ(f16_to_f32(0x0001), 5.9604644775390625e-8f);
  EXPECT_EQ(f16_to_f32(0xFC00), -INFINITY);
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  for (uint32_t h = 0; h < 0x10000; ++h) {  // every finite half round-trips exactly
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isfinite(f)) {
      ASSERT_EQ(f32_to_f16(f), static_cast<uint16_t>(h)) << h;
    }
  }
}

TEST(Safetensors, RoundTripAllDtypesAndSlices) {
  SafetensorsWriter w;
  w.add("a", DType::F32, {3, 5});
  w.add("b", DType::BF16, {7});
  w.add("c", DType::F16, {2, 2});
  w.set_metadata("format", "pt");
  const std::string path = temp_path("rt.safetensors");
  w.create(path);
  std::vector<float> a(15), b = {1.f, -2.f, 0.5f, 3.f, 1e-3f, -7.25f, 100.f}, c = {0.25f, -1.f, 2.f, 1024.f};
  for (int i = 0; i < 15; ++i) a[i] = 0.1f * i - 0.7f;
  {
    SafetensorsOutput out(path);
    w.write_f32(out, "a", 0, 6, a.data());       // two slices, as two ranks would
    w.write_f32(out, "a", 6, 9, a.data() + 6);
    w.write_f32(out, "b", 0, 7, b.data());
    w.write_f32(out, "c", 0, 4, c.data());
    out.sync();
  }
  SafetensorsFile f(path);
  EXPECT_EQ(f.header().metadata.at("format"), "pt");
  ASSERT_NE(f.header().find("a"), nullptr);
  EXPECT_EQ(f.header().find("a")->shape, (std::vector<int64_t>{3, 5}));
  std::vector<float> got(15);
  f.read_f32(*f.header().find("a"), 0, 15, got.data());
  EXPECT_EQ(got, a);
  std::vector<float> slice(3);
  f.read_f32(*f.header().find("a"), 4, 3, slice.data());  // a rank's byte range
  EXPECT_EQ(slice, std::vector<float>(a.begin() + 4, a.begin() + 7));
  got.resize(7);
  f.read_f32(*f.header().find("b"), 0, 7, got.data());
  for (int i = 0; i < 7; ++i) EXPECT_EQ(got[i], bf16_to_f32(f32_to_bf16(b[i])));
  got.resize(4);
  f.read_f32(*f.header().find("c"), 0, 4, got.data());
  EXPECT_EQ(got, c);  // all exactly representable in fp16
  EXPECT_NE(error_of([&] { f.read_f32(*f.header().find("a"), 10, 6, got.data()); }).find("outside tensor 'a'"),
            std::string::npos);
}

TEST(Safetensors, MalformedHeaders) {
  // One rule each; the phrase is what a user sees.
  expect_rejected(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4, "needs 8 bytes but data_offsets span 4");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4, "end 0 < begin 4");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, "leaves a gap");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                  8, "'b' starts at byte 4 but overlaps the previous tensor");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                  4, "overlaps the previous tensor");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 12, "trailing bytes");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8, "run past the data section");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", 4,
                  "overflows 64 bits");
  expect_rejected(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}})", 4, "unknown dtype 'Q4'");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4, "non-negative integers");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[1]}})", 4, "'data_offsets' must be [begin, end]");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}})", 4, "unknown field 'extra'");
  expect_rejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                  8, "appears twice");
  expect_rejected(R"({"__metadata__":{"k":1}})", 0, "is not a string");
  expect_rejected(R"([1,2])", 0, "does not start with a JSON object");
  expect_rejected("{\"a\xff\":1}", 0, "not valid UTF-8 JSON");
  expect_rejected(R"({"a":{"dtype":"F32",)", 0, "not valid UTF-8 JSON");
}

TEST(Safetensors, BadLengthFieldAndShortFiles) {
  const std::string tiny = temp_path("tiny.safetensors");
  std::ofstream(tiny, std::ios::binary) << "abc";
  EXPECT_NE(error_of([&] { SafetensorsFile f(tiny); }).find("too short"), std::string::npos);
  const std::string huge = temp_path("huge.safetensors");
  {
    std::ofstream f(huge, std::ios::binary);
    const uint64_t n = 200ull << 20;
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << "{}";
  }
  EXPECT_NE(error_of([&] { SafetensorsFile f(huge); }).find("exceeds the 100 MB limit"), std::string::npos);
  const std::string past = temp_path("past.safetensors");
  {
    std::ofstream f(past, std::ios::binary);
    const uint64_t n = 1000;
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << "{}";
  }
  EXPECT_NE(error_of([&] { SafetensorsFile f(past); }).find("runs past the end"), std::string::npos);
  EXPECT_NE(error_of([&] { SafetensorsFile f(temp_path("missing.safetensors")); }).find("cannot open"),
            std::string::npos);
  EXPECT_NE(error_of([&] { SafetensorsFile f(::testing::TempDir()); }).find("not a regular file"), std::string::npos);
}

TEST(HfTensorSet, ShardedIndexAndItsErrors) {
  const std::string dir = temp_path("sharded");
  mkdir(dir.c_str(), 0755);
  for (int shard = 1; shard <= 2; ++shard) {
    SafetensorsWriter w;
    w.add(shard == 1 ? "x" : "y", DType::F32, {2});
    const std::string p = dir + "/model-0000" + std::to_string(shard) + "-of-00002.safetensors";
    w.create(p);
    SafetensorsOutput out(p);
    const float v[2] = {static_cast<float>(shard), -1.f};
    w.write_f32(out, shard == 1 ? "x" : "y", 0, 2, v);
  }
  std::ofstream(dir + "/model.safetensors.index.json")
      << R"({"metadata":{},"weight_map":{"x":"model-00001-of-00002.safetensors","y":"model-00002-of-00002.safetensors"}})";
  HfTensorSet set(dir);
  EXPECT_TRUE(set.has("x") && set.has("y"));
  float v[2];
  set.read_f32("y", 0, 2, v);
  EXPECT_EQ(v[0], 2.f);
  EXPECT_EQ(v[1], -1.f);
  std::ofstream(dir + "/model.safetensors.index.json")
      << R"({"weight_map":{"x":"model-00002-of-00002.safetensors"}})";
  EXPECT_NE(error_of([&] { HfTensorSet s(dir); }).find("but that file has no such tensor"), std::string::npos);
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map":{"x":"nope.safetensors"}})";
  EXPECT_NE(error_of([&] { HfTensorSet s(dir); }).find("which does not exist"), std::string::npos);
  EXPECT_NE(error_of([&] { HfTensorSet s(temp_path("empty_dir_missing")); }).find("has neither model.safetensors"),
            std::string::npos);
}

// A model whose safetensors disagree with config.json: the error names the
// tensor and both shapes.
TEST(HfModel, ShapeMismatchNamesTensorAndShapes) {
  LlamaConfig cfg = preset_config("tiny");
  const std::string dir = temp_path("mismatch");
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
  const std::string dir = temp_path("untied_as_tied");
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

}  // namespace
}  // namespace llamaft::io
