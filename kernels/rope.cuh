// RoPE in HF rotate_half convention, in place; inverse=true is the backward pass.
// The arithmetic is rowmath's (backend/row_math.hpp), shared with the CPU backend.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llamaft::cuda {

void rope(float* x, int ld, const int32_t* positions, const float* inv_freq, int rows, int n_heads, int head_dim,
          bool inverse, cudaStream_t stream);

}  // namespace llamaft::cuda
