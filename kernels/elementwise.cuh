// Fill, axpy, scale, the fused AdamW update and double-precision reductions.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "backend/row_math.hpp"

namespace llamaft::cuda {

void fill(float* p, float value, size_t n, cudaStream_t stream);
void axpy(float alpha, const float* x, float* y, size_t n, cudaStream_t stream);
void scale(float* x, float alpha, size_t n, cudaStream_t stream);
void adamw(float* p, float* m, float* v, const float* g, size_t n, const rowmath::AdamWParams& a,
           cudaStream_t stream);
// *out (device double) = sum of x (or of x^2).
void reduce_sum(const float* x, size_t n, bool squares, double* out, cudaStream_t stream);

}  // namespace llamaft::cuda
