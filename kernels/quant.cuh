// Quantized frozen bases and LoRA dropout on the GPU.
// dequantize_items: one thread block per stored item (up to 64 x 256 values)
// of a gathered quant::UnitCodec unit, arithmetic quant::nf4_item_value /
// int8_item_value / bf16_item_value (shared with the CPU loop). dropout: inverted dropout with
// rowmath::dropout_factor, keys per sequence in device memory.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "quant/quant.hpp"

namespace llamaft::cuda {

// out(unit) <- the items of `regions` (device); items (device, n_items);
// map: the 256-entry dynamic map (device); kind: the codec's storage.
// T: float or bf16 (the value rounded once, from the fp32 dequantization).
template <typename T>
void dequantize_items(const float* regions, const quant::DequantItem* items, int n_items, quant::Kind kind,
                      const float* map, T* out, cudaStream_t stream);

// out(rows, cols) = x * mask; row r keyed by keys[r / seq] (device).
template <typename T>
void dropout(const T* x, T* out, int rows, int cols, int seq, const uint64_t* keys, uint64_t salt, float p,
             cudaStream_t stream);

}  // namespace llamaft::cuda
