#include "backend/backend.hpp"

#include <vector>

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

}  // namespace llamaft
