// The attention mask, shared by attention.cu (SIMT) and attention_tc.cu
// (tensor cores): which keys a query sees, per AttnShape (causal from
// q_offset, and doc_start for packed documents). Device code only.
#pragma once

#include "backend/attn_shape.hpp"
#include "cuda_common.cuh"

namespace llamaft::cuda {

// Keys query t of batch row b may see: [lo, hi). Padding rows (t >= tq) see none.
__device__ __forceinline__ void key_range(const AttnShape& s, int b, int t, int& lo, int& hi) {
  if (t >= s.tq) {
    lo = hi = 0;
    return;
  }
  hi = min(s.tk, s.q_offset + t + 1);
  lo = s.doc_start ? s.doc_start[size_t(b) * s.tq + t] : 0;
}

// First key any query of [t0, t0 + rows) may see (rows <= blockDim.x).
// Contains __syncthreads(): every thread of the block must call it.
__device__ __forceinline__ int tile_first_key(const AttnShape& s, int b, int t0, int rows) {
  if (!s.doc_start) return 0;
  __shared__ int first;
  if (threadIdx.x == 0) first = s.tk;
  __syncthreads();
  const int r = threadIdx.x;
  if (r < rows && t0 + r < s.tq) atomicMin(&first, s.doc_start[size_t(b) * s.tq + t0 + r]);
  __syncthreads();
  return first;
}

}  // namespace llamaft::cuda
