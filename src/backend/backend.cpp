#include "backend/backend.hpp"

#include <vector>

#include "core/dtype.hpp"
#include "quant/quant.hpp"

namespace llamaft {

void Backend::dequantize_unit(const quant::UnitCodec& codec, const float* regions, float* out) {
  std::vector<float> host_in(static_cast<size_t>(codec.shards() * codec.shard_words()));
  std::vector<float> host_out(static_cast<size_t>(codec.numel()));
  to_host(host_in.data(), regions, host_in.size() * sizeof(float));
  codec.dequantize(host_in.data(), host_out.data());
  to_device(out, host_out.data(), host_out.size() * sizeof(float));
}

void Backend::dropout(const float* x, float* out, int rows, int cols, int seq, const uint64_t* row_keys, uint64_t salt,
                      float p) {
  std::vector<float> host(static_cast<size_t>(rows) * cols);
  to_host(host.data(), x, host.size() * sizeof(float));
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      host[static_cast<size_t>(r) * cols + c] *=
          rowmath::dropout_factor(row_keys[r / seq], salt, static_cast<uint64_t>(r % seq) * cols + c, p);
  to_device(out, host.data(), host.size() * sizeof(float));
}

void Backend::pack_bf16(const float* x, float* words, size_t n) {
  std::vector<float> in(n);
  std::vector<uint16_t> out(n + (n & 1), 0);
  to_host(in.data(), x, n * sizeof(float));
  for (size_t i = 0; i < n; ++i) out[i] = f32_to_bf16(in[i]);
  to_device(words, out.data(), out.size() * sizeof(uint16_t));
}

void Backend::unpack_bf16(const float* words, size_t stride_words, float* out, size_t n, int rows) {
  for (int r = 0; r < rows; ++r) {
    std::vector<uint16_t> in(n + (n & 1));
    std::vector<float> host(n);
    to_host(in.data(), words + r * stride_words, in.size() * sizeof(uint16_t));
    for (size_t i = 0; i < n; ++i) host[i] = bf16_to_f32(in[i]);
    to_device(out + r * n, host.data(), n * sizeof(float));
  }
}

}  // namespace llamaft
