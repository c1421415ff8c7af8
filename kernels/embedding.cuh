// Embedding lookup and its scatter-add backward.
// The arithmetic is rowmath's (backend/row_math.hpp), shared with the CPU backend.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llamaft::cuda {

void embedding_fwd(const int32_t* ids, const float* table, float* out, int n, int dim, cudaStream_t stream);
void embedding_bwd(const int32_t* ids, const float* dout, float* dtable, int n, int dim, cudaStream_t stream);

}  // namespace llamaft::cuda
