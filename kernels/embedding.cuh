// Embedding lookup and its scatter-add backward (atomicAdd: repeated ids in a
// batch add into the same table row, so the sum order is not fixed).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llamaft::cuda {

// out(n, dim) = table[ids[i]]; ids(n), table(vocab, dim)
template <typename T>
void embedding_fwd(const int32_t* ids, const T* table, T* out, int n, int dim, cudaStream_t stream);
// dtable[ids[i]] += dout[i]; dout(n, dim)
template <typename T>
void embedding_bwd(const int32_t* ids, const T* dout, float* dtable, int n, int dim, cudaStream_t stream);

}  // namespace llamaft::cuda
