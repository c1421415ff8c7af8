// RoPE in the Hugging Face rotate_half convention, in place. Forward rotates
// by +angle, backward (inverse) by -angle. Positions (int32) and inv_freq
// live on the device; one thread per (row, frequency) computes sin/cos once
// and rotates that pair in every head. Arithmetic: rowmath::rope_rotate.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llamaft::cuda {

// x: (rows, ld) with head h at column h*head_dim; positions(rows); inv_freq(head_dim/2)
template <typename T>
void rope(T* x, int ld, const int32_t* positions, const float* inv_freq, int rows, int n_heads, int head_dim,
          bool inverse, cudaStream_t stream);

}  // namespace llamaft::cuda
