#include <type_traits>

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
template <typename T>
__global__ void bf16_rows_kernel(const uint16_t* x, size_t stride, T* out, size_t n, size_t total) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const uint16_t h = x[(i / n) * stride + i % n];
    if constexpr (std::is_same_v<T, bf16>)
      out[i].bits = h;
    else
      out[i] = llamaft::bf16_to_f32(h);
  }
}
}  // namespace

template <typename T>
void bf16_rows(const uint16_t* x, size_t stride, T* out, size_t n, int rows, cudaStream_t stream) {
  const size_t total = n * size_t(rows > 0 ? rows : 0);
  if (total == 0) return;
  bf16_rows_kernel<<<grid_1d(total, kThreads), kThreads, 0, stream>>>(x, stride, out, n, total);
  LLAMAFT_LAUNCH_CHECK();
}

void f32_to_bf16(const float* x, uint16_t* y, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  f32_to_bf16_kernel<<<grid_1d(n, kThreads), kThreads, 0, stream>>>(x, y, n);
  LLAMAFT_LAUNCH_CHECK();
}

template void bf16_rows<float>(const uint16_t*, size_t, float*, size_t, int, cudaStream_t);
template void bf16_rows<bf16>(const uint16_t*, size_t, bf16*, size_t, int, cudaStream_t);

}  // namespace llamaft::cuda
