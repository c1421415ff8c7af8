// Embedding lookup and its backward. The backward is deterministic without
// atomics: the caller groups the positions by token id (rows: the distinct
// ids; order: positions grouped by id, ascending within a group; offsets:
// each group's range in order), and one thread per (id, column) adds its
// group's gradients in position order, then into the table row.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llamaft::cuda {

// out(n, dim) = table[ids[i]]; ids(n), table(vocab, dim)
template <typename T>
void embedding_fwd(const int32_t* ids, const T* table, T* out, int n, int dim, cudaStream_t stream);
// dtable[rows[u]] += sum over i in [offsets[u], offsets[u+1]) of dout[order[i]], for u < n_rows;
// dout(n, dim); rows(n_rows), offsets(n_rows + 1), order(n) in device memory.
template <typename T>
void embedding_bwd_grouped(const int32_t* rows, const int32_t* offsets, const int32_t* order, int n_rows,
                           const T* dout, float* dtable, int dim, cudaStream_t stream);

}  // namespace llamaft::cuda
