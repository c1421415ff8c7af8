// Casts: fp32 -> bf16 (round to nearest even, NaN kept quiet), with the
// arithmetic of core/dtype.hpp's f32_to_bf16, shared with the host.
// bf16 values travel as their uint16_t bits.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace llamaft::cuda {

// y[i] = bf16(x[i]) for i < n
void f32_to_bf16(const float* x, uint16_t* y, size_t n, cudaStream_t stream);
// out[r * n + j] = T(x[r * stride + j]) for r < rows, j < n (stride in bf16
// elements): widened for T = float, copied for T = bf16.
template <typename T>
void bf16_rows(const uint16_t* x, size_t stride, T* out, size_t n, int rows, cudaStream_t stream);

}  // namespace llamaft::cuda
