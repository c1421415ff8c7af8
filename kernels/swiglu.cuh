// SwiGLU forward and backward over strided gate|up rows.
// The arithmetic is rowmath's (backend/row_math.hpp), shared with the CPU backend.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llamaft::cuda {

void swiglu_fwd(const float* gate, const float* up, int ld_in, float* out, int rows, int n, cudaStream_t stream);
void swiglu_bwd(const float* dout, const float* gate, const float* up, int ld_in, float* dgate, float* dup,
                int ld_dgrad, int rows, int n, cudaStream_t stream);

}  // namespace llamaft::cuda
