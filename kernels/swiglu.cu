#include "swiglu.cuh"
#include "cuda_common.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kRowThreads = 256;

__global__ void swiglu_fwd_kernel(const float* gate, const float* up, int ld_in, float* out, int rows, int n) {
  const size_t total = size_t(rows) * n;
  for (size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x) {
    const size_t r = idx / n, i = idx % n;
    out[idx] = rowmath::swiglu_fwd(gate[r * ld_in + i], up[r * ld_in + i]);
  }
}

__global__ void swiglu_bwd_kernel(const float* dout, const float* gate, const float* up, int ld_in, float* dgate,
                                  float* dup, int ld_dgrad, int rows, int n) {
  const size_t total = size_t(rows) * n;
  for (size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x) {
    const size_t r = idx / n, i = idx % n;
    float dg, du;
    rowmath::swiglu_bwd(dout[idx], gate[r * ld_in + i], up[r * ld_in + i], dg, du);
    dgate[r * ld_dgrad + i] = dg;
    dup[r * ld_dgrad + i] = du;
  }
}

}  // namespace

void swiglu_fwd(const float* gate, const float* up, int ld_in, float* out, int rows, int n, cudaStream_t stream) {
  const size_t total = size_t(rows) * n;
  if (total == 0) return;
  swiglu_fwd_kernel<<<grid_1d(total, kRowThreads), kRowThreads, 0, stream>>>(gate, up, ld_in, out, rows, n);
  LLAMAFT_LAUNCH_CHECK();
}
void swiglu_bwd(const float* dout, const float* gate, const float* up, int ld_in, float* dgate, float* dup,
                int ld_dgrad, int rows, int n, cudaStream_t stream) {
  const size_t total = size_t(rows) * n;
  if (total == 0) return;
  swiglu_bwd_kernel<<<grid_1d(total, kRowThreads), kRowThreads, 0, stream>>>(dout, gate, up, ld_in, dgate, dup, ld_dgrad, rows, n);
  LLAMAFT_LAUNCH_CHECK();
}

}  // namespace llamaft::cuda
