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

// Grid (n_rows, ceil(dim / kThreads)): x over distinct ids, y over columns.
template <typename T>
__global__ void embedding_bwd_grouped_kernel(const int32_t* rows, const int32_t* offsets, const int32_t* order,
                                             const T* dout, float* dtable, int dim) {
  const int u = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= dim) return;
  float acc = 0.f;
  for (int i = offsets[u]; i < offsets[u + 1]; ++i) acc += static_cast<float>(dout[size_t(order[i]) * dim + c]);
  dtable[size_t(rows[u]) * dim + c] += acc;
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
void embedding_bwd_grouped(const int32_t* rows, const int32_t* offsets, const int32_t* order, int n_rows,
                           const T* dout, float* dtable, int dim, cudaStream_t stream) {
  if (n_rows <= 0 || dim <= 0) return;
  const dim3 grid(n_rows, blocks_for(dim, kThreads));
  embedding_bwd_grouped_kernel<<<grid, kThreads, 0, stream>>>(rows, offsets, order, dout, dtable, dim);
  LLAMAFT_LAUNCH_CHECK();
}

template void embedding_fwd<float>(const int32_t*, const float*, float*, int, int, cudaStream_t);
template void embedding_bwd_grouped<float>(const int32_t*, const int32_t*, const int32_t*, int, const float*, float*,
                                           int, cudaStream_t);
template void embedding_fwd<bf16>(const int32_t*, const bf16*, bf16*, int, int, cudaStream_t);
template void embedding_bwd_grouped<bf16>(const int32_t*, const int32_t*, const int32_t*, int, const bf16*, float*,
                                          int, cudaStream_t);

}  // namespace llamaft::cuda
