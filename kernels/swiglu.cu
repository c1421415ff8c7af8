#include "cuda_common.cuh"
#include "swiglu.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kThreads = 256;

template <typename T>
__global__ void swiglu_fwd_kernel(const T* gate, const T* up, int ld_in, T* out, int rows, int n) {
  const size_t total = size_t(rows) * n;
  for (size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x) {
    const size_t r = idx / n, i = idx % n;
    out[idx] = static_cast<T>(
        rowmath::swiglu_fwd(static_cast<float>(gate[r * ld_in + i]), static_cast<float>(up[r * ld_in + i])));
  }
}

template <typename T>
__global__ void swiglu_bwd_kernel(const T* dout, const T* gate, const T* up, int ld_in, T* dgate, T* dup, int ld_dgrad,
                                  int rows, int n) {
  const size_t total = size_t(rows) * n;
  for (size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x) {
    const size_t r = idx / n, i = idx % n;
    float dg, du;
    rowmath::swiglu_bwd(static_cast<float>(dout[idx]), static_cast<float>(gate[r * ld_in + i]),
                        static_cast<float>(up[r * ld_in + i]), dg, du);
    dgate[r * ld_dgrad + i] = static_cast<T>(dg);
    dup[r * ld_dgrad + i] = static_cast<T>(du);
  }
}
}  // namespace

template <typename T>
void swiglu_fwd(const T* gate, const T* up, int ld_in, T* out, int rows, int n, cudaStream_t stream) {
  const size_t total = size_t(rows > 0 ? rows : 0) * (n > 0 ? n : 0);
  if (total == 0) return;
  swiglu_fwd_kernel<<<grid_1d(total, kThreads), kThreads, 0, stream>>>(gate, up, ld_in, out, rows, n);
  LLAMAFT_LAUNCH_CHECK();
}

template <typename T>
void swiglu_bwd(const T* dout, const T* gate, const T* up, int ld_in, T* dgate, T* dup, int ld_dgrad, int rows, int n,
                cudaStream_t stream) {
  const size_t total = size_t(rows > 0 ? rows : 0) * (n > 0 ? n : 0);
  if (total == 0) return;
  swiglu_bwd_kernel<<<grid_1d(total, kThreads), kThreads, 0, stream>>>(dout, gate, up, ld_in, dgate, dup, ld_dgrad,
                                                                      rows, n);
  LLAMAFT_LAUNCH_CHECK();
}

template void swiglu_fwd<float>(const float*, const float*, int, float*, int, int, cudaStream_t);
template void swiglu_bwd<float>(const float*, const float*, const float*, int, float*, float*, int, int, int,
                                cudaStream_t);
template void swiglu_fwd<bf16>(const bf16*, const bf16*, int, bf16*, int, int, cudaStream_t);
template void swiglu_bwd<bf16>(const bf16*, const bf16*, const bf16*, int, bf16*, bf16*, int, int, int,
                               cudaStream_t);

}  // namespace llamaft::cuda
