#include "embedding.cuh"
#include "cuda_common.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kRowThreads = 256;

__global__ void embedding_fwd_kernel(const int32_t* ids, const float* table, float* out, int n, int dim) {
  const size_t total = size_t(n) * dim;
  for (size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x)
    out[idx] = table[size_t(ids[idx / dim]) * dim + idx % dim];
}

__global__ void embedding_bwd_kernel(const int32_t* ids, const float* dout, float* dtable, int n, int dim) {
  const size_t total = size_t(n) * dim;
  for (size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x)
    atomicAdd(dtable + size_t(ids[idx / dim]) * dim + idx % dim, dout[idx]);
}

}  // namespace

void embedding_fwd(const int32_t* ids, const float* table, float* out, int n, int dim, cudaStream_t stream) {
  const size_t total = size_t(n) * dim;
  if (total == 0) return;
  embedding_fwd_kernel<<<grid_1d(total, kRowThreads), kRowThreads, 0, stream>>>(ids, table, out, n, dim);
  LLAMAFT_LAUNCH_CHECK();
}
void embedding_bwd(const int32_t* ids, const float* dout, float* dtable, int n, int dim, cudaStream_t stream) {
  const size_t total = size_t(n) * dim;
  if (total == 0) return;
  embedding_bwd_kernel<<<grid_1d(total, kRowThreads), kRowThreads, 0, stream>>>(ids, dout, dtable, n, dim);
  LLAMAFT_LAUNCH_CHECK();
}

}  // namespace llamaft::cuda
