// SwiGLU forward and backward over strided gate|up rows (the model keeps gate
// and up side by side in one (rows, 2F) buffer, so ld_in = 2F).
// Arithmetic: rowmath::swiglu_fwd / swiglu_bwd.
#pragma once

#include <cuda_runtime.h>

namespace llamaft::cuda {

// out(rows, n) = silu(gate) * up; gate, up: (rows, ld_in)
template <typename T>
void swiglu_fwd(const T* gate, const T* up, int ld_in, T* out, int rows, int n, cudaStream_t stream);
// dout(rows, n); dgate, dup: (rows, ld_dgrad), overwritten
template <typename T>
void swiglu_bwd(const T* dout, const T* gate, const T* up, int ld_in, T* dgate, T* dup, int ld_dgrad, int rows, int n,
                cudaStream_t stream);

}  // namespace llamaft::cuda
