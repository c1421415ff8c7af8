// RMSNorm forward and backward. One warp per row for y and dx; dw is reduced
// deterministically without atomics: per-chunk column partials (a block per
// (256 columns, chunk of rows)) into a workspace, then one pass that adds the
// chunks in order into dw. The arithmetic is rowmath's (backend/row_math.hpp).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace llamaft::cuda {

// y(rows, dim) = x * rstd * w; rstd(rows) = rowmath::rmsnorm_rstd(sum x^2)
template <typename T>
void rmsnorm_fwd(const T* x, const T* w, T* y, float* rstd, int rows, int dim, float eps, cudaStream_t stream);

// Floats of workspace rmsnorm_bwd needs when dw is given.
size_t rmsnorm_bwd_workspace_floats(int rows, int dim);

// dx(rows, dim) overwritten; dw(dim, fp32 for every T) accumulated (skipped when dw is null).
template <typename T>
void rmsnorm_bwd(const T* dy, const T* x, const T* w, const float* rstd, T* dx, float* dw, int rows, int dim,
                 float* workspace, cudaStream_t stream);

}  // namespace llamaft::cuda
