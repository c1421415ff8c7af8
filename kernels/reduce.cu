#include "cuda_common.cuh"
#include "reduce.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kThreads = 256;
constexpr size_t kMinPerBlock = 4096;  // elements per block before adding blocks

template <typename T>
__global__ void reduce_sum_partial_kernel(const T* x, size_t n, bool squares, double* partials) {
  __shared__ double scratch[32];
  double s = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const double xi = static_cast<double>(static_cast<float>(x[i]));
    s += squares ? xi * xi : xi;
  }
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// One block: out = sum of partials[0..count), in a fixed order.
__global__ void reduce_sum_final_kernel(const double* partials, unsigned count, double* out) {
  __shared__ double scratch[32];
  double s = 0;
  for (unsigned i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) *out = s;
}
}  // namespace

template <typename T>
void reduce_sum(const T* x, size_t n, bool squares, double* partials, double* out, cudaStream_t stream) {
  const unsigned blocks =
      static_cast<unsigned>(std::min<size_t>(reduce_partials_needed(), (n + kMinPerBlock - 1) / kMinPerBlock));
  if (blocks > 0) {
    reduce_sum_partial_kernel<<<blocks, kThreads, 0, stream>>>(x, n, squares, partials);
    LLAMAFT_LAUNCH_CHECK();
  }
  reduce_sum_final_kernel<<<1, kThreads, 0, stream>>>(partials, blocks, out);
  LLAMAFT_LAUNCH_CHECK();
}

template void reduce_sum<float>(const float*, size_t, bool, double*, double*, cudaStream_t);

}  // namespace llamaft::cuda
