#include "cuda_common.cuh"
#include "rope.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kThreads = 256;

template <typename T, bool kInverse>
__device__ __forceinline__ void rope_apply(T* x, int ld, const int32_t* positions, const float* inv_freq, int rows,
                                           int n_heads, int head_dim) {
  const int half = head_dim / 2;
  const size_t total = size_t(rows) * half;
  for (size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x) {
    const int i = int(idx % half);
    const size_t r = idx / half;
    const float angle = static_cast<float>(positions[r]) * inv_freq[i];  // fp32, as HF and the CPU backend
    const float c = cosf(angle), s = kInverse ? -sinf(angle) : sinf(angle);
    T* row = x + r * ld;  // (ld)
    for (int h = 0; h < n_heads; ++h) {
      T* head = row + size_t(h) * head_dim;  // (head_dim)
      float a = static_cast<float>(head[i]), b = static_cast<float>(head[i + half]);
      rowmath::rope_rotate(a, b, c, s);
      head[i] = static_cast<T>(a);
      head[i + half] = static_cast<T>(b);
    }
  }
}

template <typename T>
__global__ void rope_fwd_kernel(T* x, int ld, const int32_t* positions, const float* inv_freq, int rows, int n_heads,
                                int head_dim) {
  rope_apply<T, false>(x, ld, positions, inv_freq, rows, n_heads, head_dim);
}

template <typename T>
__global__ void rope_bwd_kernel(T* x, int ld, const int32_t* positions, const float* inv_freq, int rows, int n_heads,
                                int head_dim) {
  rope_apply<T, true>(x, ld, positions, inv_freq, rows, n_heads, head_dim);
}
}  // namespace

template <typename T>
void rope(T* x, int ld, const int32_t* positions, const float* inv_freq, int rows, int n_heads, int head_dim,
          bool inverse, cudaStream_t stream) {
  const size_t total = size_t(rows > 0 ? rows : 0) * (head_dim / 2);
  if (total == 0 || n_heads <= 0) return;
  if (inverse)
    rope_bwd_kernel<<<grid_1d(total, kThreads), kThreads, 0, stream>>>(x, ld, positions, inv_freq, rows, n_heads,
                                                                      head_dim);
  else
    rope_fwd_kernel<<<grid_1d(total, kThreads), kThreads, 0, stream>>>(x, ld, positions, inv_freq, rows, n_heads,
                                                                      head_dim);
  LLAMAFT_LAUNCH_CHECK();
}

template void rope<float>(float*, int, const int32_t*, const float*, int, int, int, bool, cudaStream_t);
template void rope<bf16>(bf16*, int, const int32_t*, const float*, int, int, int, bool, cudaStream_t);

}  // namespace llamaft::cuda
