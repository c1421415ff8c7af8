// Quantized block-like units for the C++ tests (the CPU's in tests/unit and
// the CUDA ones in tests/cuda): a unit laid out from (name, shape) pairs, and
// every shard region of a codec quantized from the unit's fp32 values in one
// process, as a shard group's ranks would.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/param_layout.hpp"
#include "quant/quant.hpp"

namespace llamaft::test {

// A block-like unit from (name, shape) pairs, laid out back to back.
inline Unit make_unit(const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors) {
  Unit unit{UnitKind::kBlock, 0, "layers.0", {}, 0};
  for (const auto& [name, shape] : tensors) {
    TensorSlot s{name, shape, unit.numel};
    unit.numel += s.numel();
    unit.tensors.push_back(s);
  }
  return unit;
}

// The codec's shards regions (shards * shard_words() words) quantized from
// src (the unit's values): two passes over the regions stand in for the
// all-reduce of the per-tensor sums, the first adding every rank's, the
// second quantizing with the totals.
inline std::vector<float> quantized_regions(const Unit& unit, const quant::UnitCodec& codec, int shards,
                                            const std::vector<float>& src) {
  std::vector<float> regions(static_cast<size_t>(shards) * codec.shard_words());
  auto read = [&](int slot, int64_t elem, int64_t count, float* dst) {
    const int64_t at = unit.tensors[slot].offset + elem;
    std::copy(src.begin() + at, src.begin() + at + count, dst);
  };
  std::vector<double> total(codec.num_quantized(), 0.0);
  for (int r = 0; r < shards; ++r)
    codec.quantize_region(r, regions.data() + r * codec.shard_words(), read, [&](double* sums, size_t n) {
      for (size_t i = 0; i < n; ++i) total[i] += sums[i];
    });
  for (int r = 0; r < shards; ++r)
    codec.quantize_region(r, regions.data() + r * codec.shard_words(), read, [&](double* sums, size_t n) {
      std::copy(total.begin(), total.begin() + n, sums);
    });
  return regions;
}

}  // namespace llamaft::test
