#include "cuda_common.cuh"
#include "embedding.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kThreads = 256;

template <typename T>
__global__ void embedding_fwd_kernel(const int32_t* ids, const T* table, T* out, int n, int dim) {
  const size_t total = size_t(n) * dim;
  for (size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x)
    out[idx] = table[size_t(ids[idx / dim]) * dim + idx % dim];
}

template <typename T>
__global__ void embedding_bwd_kernel(const int32_t* ids, const T* dout, float* dtable, int n, int dim) {
  const size_t total = size_t(n) * dim;
  for (size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x)
    atomicAdd(dtable + size_t(ids[idx / dim]) * dim + idx % dim, static_cast<float>(dout[idx]));
}
}  // namespace

template <typename T>
void embedding_fwd(const int32_t* ids, const T* table, T* out, int n, int dim, cudaStream_t stream) {
  const size_t total = size_t(n > 0 ? n : 0) * (dim > 0 ? dim : 0);
  if (total == 0) return;
  embedding_fwd_kernel<<<grid_1d(total, kThreads), kThreads, 0, stream>>>(ids, table, out, n, dim);
  LLAMAFT_LAUNCH_CHECK();
}

template <typename T>
void embedding_bwd(const int32_t* ids, const T* dout, float* dtable, int n, int dim, cudaStream_t stream) {
  const size_t total = size_t(n > 0 ? n : 0) * (dim > 0 ? dim : 0);
  if (total == 0) return;
  embedding_bwd_kernel<<<grid_1d(total, kThreads), kThreads, 0, stream>>>(ids, dout, dtable, n, dim);
  LLAMAFT_LAUNCH_CHECK();
}

template void embedding_fwd<float>(const int32_t*, const float*, float*, int, int, cudaStream_t);
template void embedding_bwd<float>(const int32_t*, const float*, float*, int, int, cudaStream_t);
template void embedding_fwd<bf16>(const int32_t*, const bf16*, bf16*, int, int, cudaStream_t);
template void embedding_bwd<bf16>(const int32_t*, const bf16*, float*, int, int, cudaStream_t);

}  // namespace llamaft::cuda
