#include "cuda_common.cuh"
#include "rmsnorm.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kThreads = 256;
constexpr int kRowsPerBlock = kThreads / kWarp;  // one warp per row
constexpr int kDwColumns = kThreads;             // columns per dw block
constexpr int kDwMaxChunks = 256;                // row chunks (workspace rows)
constexpr int kDwMinRows = 32;                   // rows per chunk at least

int dw_rows_per_chunk(int rows) {
  const int chunks = std::min(kDwMaxChunks, std::max(1, rows / kDwMinRows));
  return (rows + chunks - 1) / chunks;
}

template <typename T>
__global__ void rmsnorm_fwd_kernel(const T* x, const T* w, T* y, float* rstd, int rows, int dim, float eps) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (row >= rows) return;  // whole warp
  const T* xr = x + size_t(row) * dim;  // (dim)
  T* yr = y + size_t(row) * dim;        // (dim)
  float ss = 0.f;
  for (int i = lane; i < dim; i += kWarp) {
    const float xi = static_cast<float>(xr[i]);
    ss += xi * xi;
  }
  const float r = rowmath::rmsnorm_rstd(warp_sum(ss), dim, eps);
  for (int i = lane; i < dim; i += kWarp)
    yr[i] = static_cast<T>(static_cast<float>(xr[i]) * r * static_cast<float>(w[i]));
  if (lane == 0) rstd[row] = r;
}

// dx only; dw comes from the two kernels below.
template <typename T>
__global__ void rmsnorm_bwd_kernel(const T* dy, const T* x, const T* w, const float* rstd, T* dx, int rows,
                                   int dim) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (row >= rows) return;  // whole warp
  const size_t o = size_t(row) * dim;
  const float r = rstd[row];
  float dot = 0.f;
  for (int i = lane; i < dim; i += kWarp)
    dot += static_cast<float>(w[i]) * static_cast<float>(dy[o + i]) * static_cast<float>(x[o + i]);
  const float mean = warp_sum(dot) / static_cast<float>(dim);
  for (int i = lane; i < dim; i += kWarp)
    dx[o + i] = static_cast<T>(rowmath::rmsnorm_dx_elem(static_cast<float>(x[o + i]), static_cast<float>(w[i]),
                                                        static_cast<float>(dy[o + i]), r, mean));
}

// partial(chunks, dim): partial[c][i] = sum over rows r of chunk c of dy[r][i] * x[r][i] * rstd[r]
// (the dw term of rowmath::rmsnorm_row_bwd). Grid (ceil(dim / kDwColumns), chunks).
template <typename T>
__global__ void rmsnorm_bwd_dw_partial_kernel(const T* dy, const T* x, const float* rstd, float* partial, int rows,
                                              int dim, int rows_per_chunk) {
  const int col = blockIdx.x * kDwColumns + threadIdx.x;
  if (col >= dim) return;
  const int r0 = blockIdx.y * rows_per_chunk, r1 = min(rows, r0 + rows_per_chunk);
  float acc = 0.f;
  for (int r = r0; r < r1; ++r) {
    const size_t o = size_t(r) * dim + col;
    acc += static_cast<float>(dy[o]) * static_cast<float>(x[o]) * rstd[r];
  }
  partial[size_t(blockIdx.y) * dim + col] = acc;
}

// dw[i] += sum over chunks c (in order) of partial[c][i]
__global__ void rmsnorm_bwd_dw_reduce_kernel(const float* partial, float* dw, int chunks, int dim) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= dim) return;
  float acc = 0.f;
  for (int c = 0; c < chunks; ++c) acc += partial[size_t(c) * dim + col];
  dw[col] += acc;
}
}  // namespace

template <typename T>
void rmsnorm_fwd(const T* x, const T* w, T* y, float* rstd, int rows, int dim, float eps, cudaStream_t stream) {
  if (rows <= 0) return;
  rmsnorm_fwd_kernel<<<blocks_for(rows, kRowsPerBlock), kThreads, 0, stream>>>(x, w, y, rstd, rows, dim, eps);
  LLAMAFT_LAUNCH_CHECK();
}

size_t rmsnorm_bwd_workspace_floats(int rows, int dim) {
  if (rows <= 0 || dim <= 0) return 0;
  const int per_chunk = dw_rows_per_chunk(rows);
  return size_t((rows + per_chunk - 1) / per_chunk) * dim;
}

template <typename T>
void rmsnorm_bwd(const T* dy, const T* x, const T* w, const float* rstd, T* dx, float* dw, int rows, int dim,
                 float* workspace, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return;
  rmsnorm_bwd_kernel<<<blocks_for(rows, kRowsPerBlock), kThreads, 0, stream>>>(dy, x, w, rstd, dx, rows, dim);
  LLAMAFT_LAUNCH_CHECK();
  if (!dw) return;
  LLAMAFT_CHECK(workspace != nullptr, "rmsnorm_bwd needs a workspace of ", rmsnorm_bwd_workspace_floats(rows, dim),
                " floats");
  const int per_chunk = dw_rows_per_chunk(rows);
  const int chunks = (rows + per_chunk - 1) / per_chunk;
  const dim3 grid(blocks_for(dim, kDwColumns), chunks);
  rmsnorm_bwd_dw_partial_kernel<<<grid, kDwColumns, 0, stream>>>(dy, x, rstd, workspace, rows, dim, per_chunk);
  LLAMAFT_LAUNCH_CHECK();
  rmsnorm_bwd_dw_reduce_kernel<<<blocks_for(dim, kThreads), kThreads, 0, stream>>>(workspace, dw, chunks, dim);
  LLAMAFT_LAUNCH_CHECK();
}

template void rmsnorm_fwd<float>(const float*, const float*, float*, float*, int, int, float, cudaStream_t);
template void rmsnorm_bwd<float>(const float*, const float*, const float*, const float*, float*, float*, int, int,
                                 float*, cudaStream_t);
template void rmsnorm_fwd<bf16>(const bf16*, const bf16*, bf16*, float*, int, int, float, cudaStream_t);
template void rmsnorm_bwd<bf16>(const bf16*, const bf16*, const bf16*, const float*, bf16*, float*, int, int,
                                float*, cudaStream_t);

}  // namespace llamaft::cuda
