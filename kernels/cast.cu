#include "cast.cuh"
#include "core/dtype.hpp"
#include "cuda_common.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kThreads = 256;

__global__ void f32_to_bf16_kernel(const float* x, uint16_t* y, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = llamaft::f32_to_bf16(x[i]);
}
}  // namespace

void f32_to_bf16(const float* x, uint16_t* y, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  f32_to_bf16_kernel<<<grid_1d(n, kThreads), kThreads, 0, stream>>>(x, y, n);
  LLAMAFT_LAUNCH_CHECK();
}

}  // namespace llamaft::cuda
