// GGUF export's lowest layers without Python: the writer's files read back
// by io/gguf's reader (every metadata type written, tensor offsets aligned,
// the data where the infos say), and every quantizer's blocks dequantized
// by the reader within the format's own error bound (half a quantization
// step per value, from each block's scale), with the quantizers' special
// cases (zeros, constants, values below GROUP_MAX_EPS). Bit-equality with
// ggml and gguf-py is tests/gguf's job.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "io/gguf.hpp"
#include "io/gguf_quantize.hpp"
#include "io/gguf_writer.hpp"

namespace llamaft::io {
namespace {

std::string temp_path(const char* name) {
  return std::string(::testing::TempDir()) + "/" + name + "." + std::to_string(getpid()) + ".gguf";
}

TEST(GgufWriter, MetadataAndTensorsReadBack) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", 3);
  w.add_i32("test.negative", -7);
  w.add_f32("llama.rope.freq_base", 500000.f);
  w.add_bool("tokenizer.ggml.add_bos_token", true);
  w.add_string_array("tokenizer.ggml.tokens", {"<s>", "\xe2\x96\x81hi", ""});
  w.add_f32_array("tokenizer.ggml.scores", {0.f, -1.5f, -10000.f});
  w.add_i32_array("tokenizer.ggml.token_type", {3, 1, 5});
  w.add_tensor("a.weight", {64, 3}, static_cast<uint32_t>(GgmlType::kF32));
  w.add_tensor("b.weight", {5}, static_cast<uint32_t>(GgmlType::kF32));  // 20 bytes: the next offset is padded
  w.add_tensor("c.weight", {256, 2}, static_cast<uint32_t>(GgmlType::kQ4_K));
  EXPECT_TRUE(w.has("llama.block_count"));
  EXPECT_THROW(w.add_u32("llama.block_count", 4), Error);
  const std::string path = temp_path("writer");
  w.write(path, [&](size_t i, uint8_t* dst) {
    const GgufTensorSpec& t = w.tensors()[i];
    for (uint64_t k = 0; k < t.bytes; ++k) dst[k] = static_cast<uint8_t>(i * 31 + k);
  });
  EXPECT_EQ(access((path + ".partial").c_str(), F_OK), -1);
  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 3);
  EXPECT_EQ(f.find("llama.block_count")->type, GgufValueType::kUint32);
  EXPECT_EQ(f.get_int("test.negative"), -7);
  EXPECT_EQ(f.get_float("llama.rope.freq_base"), 500000.0);
  EXPECT_TRUE(f.get_bool_or("tokenizer.ggml.add_bos_token", false));
  EXPECT_EQ(f.find("tokenizer.ggml.tokens")->strings, (std::vector<std::string>{"<s>", "\xe2\x96\x81hi", ""}));
  EXPECT_EQ(f.find("tokenizer.ggml.scores")->floats, (std::vector<double>{0.0, -1.5, -10000.0}));
  EXPECT_EQ(f.find("tokenizer.ggml.token_type")->ints, (std::vector<int64_t>{3, 1, 5}));
  ASSERT_EQ(f.tensors().size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const GgufTensorInfo& t = f.tensors()[i];
    EXPECT_EQ(t.name, w.tensors()[i].name);
    EXPECT_EQ(t.ne, w.tensors()[i].ne);
    EXPECT_EQ(t.offset % 32, 0u);
    const uint8_t* d = f.tensor_data(t);
    for (uint64_t k = 0; k < t.bytes; ++k) ASSERT_EQ(d[k], static_cast<uint8_t>(i * 31 + k)) << t.name << " byte " << k;
  }
  EXPECT_EQ(f.tensors()[2].bytes, 2u * 144u);
  std::remove(path.c_str());
}

TEST(GgufWriter, AFailingFillLeavesNothing) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_tensor("a.weight", {32}, static_cast<uint32_t>(GgmlType::kF32));
  const std::string path = temp_path("failing");
  EXPECT_THROW(w.write(path, [](size_t, uint8_t*) { LLAMAFT_FAIL("injected"); }), Error);
  EXPECT_EQ(access(path.c_str(), F_OK), -1);
  EXPECT_EQ(access((path + ".partial").c_str(), F_OK), -1);
}

// Values of one row that reach the quantizers' special cases.
std::vector<float> test_row(int kind, int n, std::mt19937& rng) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> x(n);
  for (float& v : x) v = g(rng);
  switch (kind) {
    case 0: std::fill(x.begin(), x.end(), 0.f); break;
    case 1: std::fill(x.begin(), x.end(), 0.375f); break;
    case 2: for (float& v : x) v *= 1e-17f; break;  // below GROUP_MAX_EPS
    case 3: for (float& v : x) v = -std::fabs(v); break;
    case 4: for (float& v : x) v = v * 100.f + 5.f; break;
    default: break;
  }
  return x;
}

TEST(GgufQuantize, DequantizesWithinHalfAStep) {
  std::mt19937 rng(3);
  const GgmlType types[] = {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0, GgmlType::kQ4_0,
                            GgmlType::kQ5_0, GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ6_K};
  const int n = 512;
  for (GgmlType gt : types) {
    const uint32_t type = static_cast<uint32_t>(gt);
    ASSERT_TRUE(ggml_type_quantizable(type)) << ggml_type_name(type);
    for (int kind = 0; kind < 6; ++kind) {
      const std::vector<float> x = test_row(kind, n, rng);
      std::vector<uint8_t> q(static_cast<size_t>(ggml_row_bytes(type, n)));
      quantize_gguf_rows(type, x.data(), q.data(), 1, n);
      std::vector<float> y(n);
      dequantize_gguf_rows(type, q.data(), y.data(), n);
      // Per block: the largest error allowed is about one step of the
      // format's grid over the block's range (asymmetric K-quants: the range
      // max - min; the rest: |x| max), plus the fp16 scale's rounding.
      const int bv = static_cast<int>(ggml_block_values(type) == 1 ? 32 : ggml_block_values(type));
      const double levels = gt == GgmlType::kQ8_0 ? 127 : gt == GgmlType::kQ4_0 ? 8 : gt == GgmlType::kQ5_0 ? 16
                          : gt == GgmlType::kQ4_K ? 15 : gt == GgmlType::kQ5_K ? 31 : gt == GgmlType::kQ6_K ? 32 : 0;
      for (int b = 0; b < n / bv; ++b) {
        double amax = 0, lo = 0, hi = 0;
        for (int i = b * bv; i < (b + 1) * bv; ++i) {
          amax = std::max(amax, static_cast<double>(std::fabs(x[i])));
          lo = std::min(lo, static_cast<double>(x[i]));
          hi = std::max(hi, static_cast<double>(x[i]));
        }
        double tol = 0;
        if (gt == GgmlType::kF16) tol = amax * std::ldexp(1.0, -11) + 6e-8;
        else if (gt == GgmlType::kBF16) tol = amax * std::ldexp(1.0, -8);
        else if (levels > 0) tol = ((gt == GgmlType::kQ4_K || gt == GgmlType::kQ5_K) ? (hi - lo) : amax) / levels * 1.2 + 1e-12;
        if (gt == GgmlType::kQ6_K || gt == GgmlType::kQ4_K || gt == GgmlType::kQ5_K) tol *= 2.5;  // 6-bit sub-block scales
        for (int i = b * bv; i < (b + 1) * bv; ++i)
          ASSERT_LE(std::fabs(static_cast<double>(y[i]) - x[i]), tol)
              << ggml_type_name(type) << " row kind " << kind << " value " << i << ": " << x[i] << " -> " << y[i];
      }
      if (kind == 0) for (float v : y) EXPECT_EQ(v, 0.f) << ggml_type_name(type);
      if (gt == GgmlType::kF32) EXPECT_EQ(std::memcmp(x.data(), y.data(), 4 * n), 0);
    }
  }
}

}  // namespace
}  // namespace llamaft::io
