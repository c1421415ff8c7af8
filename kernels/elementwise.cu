#include "cuda_common.cuh"
#include "elementwise.cuh"

namespace llamaft::cuda {

namespace {
int64_t g_launches = 0;  // the backend runs on one host thread
}  // namespace
void note_launch() { ++g_launches; }
int64_t launches_issued() { return g_launches; }

namespace {
constexpr unsigned kThreads = 256;

template <typename T>
__global__ void fill_kernel(T* p, float value, size_t n) {
  const T v = static_cast<T>(value);
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) p[i] = v;
}

template <typename T>
__global__ void axpy_kernel(float alpha, const T* x, T* y, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = static_cast<T>(static_cast<float>(y[i]) + alpha * static_cast<float>(x[i]));
}

template <typename T>
__global__ void scale_kernel(T* x, float alpha, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    x[i] = static_cast<T>(static_cast<float>(x[i]) * alpha);
}
}  // namespace

template <typename T>
void fill(T* p, float value, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  fill_kernel<<<grid_1d(n, kThreads), kThreads, 0, stream>>>(p, value, n);
  LLAMAFT_LAUNCH_CHECK();
}

template <typename T>
void axpy(float alpha, const T* x, T* y, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  axpy_kernel<<<grid_1d(n, kThreads), kThreads, 0, stream>>>(alpha, x, y, n);
  LLAMAFT_LAUNCH_CHECK();
}

template <typename T>
void scale(T* x, float alpha, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  scale_kernel<<<grid_1d(n, kThreads), kThreads, 0, stream>>>(x, alpha, n);
  LLAMAFT_LAUNCH_CHECK();
}

template void fill<float>(float*, float, size_t, cudaStream_t);
template void axpy<float>(float, const float*, float*, size_t, cudaStream_t);
template void scale<float>(float*, float, size_t, cudaStream_t);
template void fill<bf16>(bf16*, float, size_t, cudaStream_t);
template void axpy<bf16>(float, const bf16*, bf16*, size_t, cudaStream_t);

}  // namespace llamaft::cuda
