#include "rmsnorm.cuh"
#include "cuda_common.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kRowThreads = 256;

// One block per row.
__global__ void rmsnorm_fwd_kernel(const float* x, const float* w, float* y, float* rstd, int dim, float eps) {
  __shared__ float scratch[32];
  const float* xr = x + size_t(blockIdx.x) * dim;
  float* yr = y + size_t(blockIdx.x) * dim;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  const float r = rowmath::rmsnorm_rstd(block_sum(ss, scratch), dim, eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * r * w[i];
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

__global__ void rmsnorm_bwd_kernel(const float* dy, const float* x, const float* w, const float* rstd, float* dx,
                                   float* dw, int dim) {
  __shared__ float scratch[32];
  const size_t o = size_t(blockIdx.x) * dim;
  const float r = rstd[blockIdx.x];
  float dot = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) dot += w[i] * dy[o + i] * x[o + i];
  const float mean = block_sum(dot, scratch) / float(dim);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    dx[o + i] = rowmath::rmsnorm_dx_elem(x[o + i], w[i], dy[o + i], r, mean);
    if (dw) atomicAdd(dw + i, dy[o + i] * x[o + i] * r);
  }
}

}  // namespace

void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int rows, int dim, float eps,
                 cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_fwd_kernel<<<rows, kRowThreads, 0, stream>>>(x, w, y, rstd, dim, eps);
  LLAMAFT_LAUNCH_CHECK();
}
void rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                 int rows, int dim, cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_bwd_kernel<<<rows, kRowThreads, 0, stream>>>(dy, x, w, rstd, dx, dw, dim);
  LLAMAFT_LAUNCH_CHECK();
}

}  // namespace llamaft::cuda
