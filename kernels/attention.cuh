// Causal grouped-query attention with an online softmax over key tiles, so no
// T x T matrix is ever materialised. Semantics are backend.hpp's AttnShape
// (q_offset for KV-cache decoding, doc_start for packed sequences). This
// first version runs one block per query row; the tiled tensor-core kernel
// of the CUDA issue replaces it behind the same launcher.
#pragma once

#include <cuda_runtime.h>

#include "backend/backend.hpp"

namespace llamaft::cuda {

void attention_fwd(const AttnShape& s, const float* q, const float* k, const float* v, float* out, float* lse,
                   cudaStream_t stream);
void attention_bwd(const AttnShape& s, const float* q, const float* k, const float* v, const float* out,
                   const float* lse, const float* dout, float* dq, float* dk, float* dv, cudaStream_t stream);

}  // namespace llamaft::cuda
