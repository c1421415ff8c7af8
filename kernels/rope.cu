#include "rope.cuh"
#include "cuda_common.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kRowThreads = 256;

// One thread per (row, head, i < half).
__global__ void rope_kernel(float* x, int ld, const int32_t* positions, const float* inv_freq, int rows,
                            int n_heads, int head_dim, bool inverse) {
  const int half = head_dim / 2;
  const size_t total = size_t(rows) * n_heads * half;
  for (size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x) {
    const int i = int(idx % half);
    const int h = int((idx / half) % n_heads);
    const size_t r = idx / (size_t(half) * n_heads);
    const float angle = float(positions[r]) * inv_freq[i];
    const float c = cosf(angle), s = inverse ? -sinf(angle) : sinf(angle);
    float* v = x + r * ld + size_t(h) * head_dim;
    rowmath::rope_rotate(v[i], v[i + half], c, s);
  }
}

}  // namespace

void rope(float* x, int ld, const int32_t* positions, const float* inv_freq, int rows, int n_heads, int head_dim,
          bool inverse, cudaStream_t stream) {
  const size_t total = size_t(rows) * n_heads * (head_dim / 2);
  if (total == 0) return;
  rope_kernel<<<grid_1d(total, kRowThreads), kRowThreads, 0, stream>>>(x, ld, positions, inv_freq, rows, n_heads, head_dim, inverse);
  LLAMAFT_LAUNCH_CHECK();
}

}  // namespace llamaft::cuda
