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

}  // namespace llamaft
