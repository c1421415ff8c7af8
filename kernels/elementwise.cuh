// Fill, axpy and scale over flat buffers (grid-stride loops).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace llamaft::cuda {

// p[i] = value
template <typename T>
void fill(T* p, float value, size_t n, cudaStream_t stream);
// y[i] += alpha * x[i]
template <typename T>
void axpy(float alpha, const T* x, T* y, size_t n, cudaStream_t stream);
// x[i] *= alpha
template <typename T>
void scale(T* x, float alpha, size_t n, cudaStream_t stream);

}  // namespace llamaft::cuda
