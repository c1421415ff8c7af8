// The AdamW step (rowmath::adamw_elem on every element; fp32 master weights
// and moments, gradient type G). adamw() updates one flat buffer;
// adamw_multi() updates a list of tensors in as few launches as possible
// (up to kAdamWMaxTensors per launch), for optimizers that keep one buffer
// per parameter.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "backend/row_math.hpp"

namespace llamaft::cuda {

template <typename G>
struct AdamWTensor {
  float* p;     // (n) parameters, updated
  float* m;     // (n) first moment, updated
  float* v;     // (n) second moment, updated
  const G* g;   // (n) gradient
  size_t n;
};
constexpr int kAdamWMaxTensors = 24;

template <typename G>
void adamw(float* p, float* m, float* v, const G* g, size_t n, const rowmath::AdamWParams& a, cudaStream_t stream);

// `tensors` is a host array of `count` descriptors of device buffers.
template <typename G>
void adamw_multi(const AdamWTensor<G>* tensors, int count, const rowmath::AdamWParams& a, cudaStream_t stream);

}  // namespace llamaft::cuda
