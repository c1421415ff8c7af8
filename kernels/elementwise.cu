#include "cuda_common.cuh"
#include "elementwise.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kThreads = 256;

__global__ void fill_kernel(float* p, float value, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = value;
}
__global__ void axpy_kernel(float alpha, const float* x, float* y, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] += alpha * x[i];
}
__global__ void scale_kernel(float* x, float alpha, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    x[i] *= alpha;
}
__global__ void adamw_kernel(float* p, float* m, float* v, const float* g, size_t n, rowmath::AdamWParams a) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    rowmath::adamw_elem(p[i], m[i], v[i], g[i], a);
}
__global__ void reduce_kernel(const float* x, size_t n, bool squares, double* out) {
  __shared__ double partial[kThreads];
  double s = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    s += squares ? double(x[i]) * x[i] : double(x[i]);
  partial[threadIdx.x] = s;
  __syncthreads();
  for (unsigned o = blockDim.x / 2; o > 0; o /= 2) {
    if (threadIdx.x < o) partial[threadIdx.x] += partial[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(out, partial[0]);
}

}  // namespace

void fill(float* p, float value, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  fill_kernel<<<grid_1d(n, kThreads), kThreads, 0, stream>>>(p, value, n);
  LLAMAFT_LAUNCH_CHECK();
}
void axpy(float alpha, const float* x, float* y, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  axpy_kernel<<<grid_1d(n, kThreads), kThreads, 0, stream>>>(alpha, x, y, n);
  LLAMAFT_LAUNCH_CHECK();
}
void scale(float* x, float alpha, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  scale_kernel<<<grid_1d(n, kThreads), kThreads, 0, stream>>>(x, alpha, n);
  LLAMAFT_LAUNCH_CHECK();
}
void adamw(float* p, float* m, float* v, const float* g, size_t n, const rowmath::AdamWParams& a,
           cudaStream_t stream) {
  if (n == 0) return;
  adamw_kernel<<<grid_1d(n, kThreads), kThreads, 0, stream>>>(p, m, v, g, n, a);
  LLAMAFT_LAUNCH_CHECK();
}
void reduce_sum(const float* x, size_t n, bool squares, double* out, cudaStream_t stream) {
  CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double), stream));
  if (n == 0) return;
  reduce_kernel<<<grid_1d(n, kThreads), kThreads, 0, stream>>>(x, n, squares, out);
  LLAMAFT_LAUNCH_CHECK();
}

}  // namespace llamaft::cuda
