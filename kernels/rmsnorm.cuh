// RMSNorm forward and backward (one block per row; dw accumulated with atomics).
// The arithmetic is rowmath's (backend/row_math.hpp), shared with the CPU backend.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llamaft::cuda {

void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int rows, int dim, float eps,
                 cudaStream_t stream);
void rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                 int rows, int dim, cudaStream_t stream);

}  // namespace llamaft::cuda
