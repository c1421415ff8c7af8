#include "adamw.cuh"
#include "cuda_common.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kThreads = 256;
constexpr size_t kChunk = 16 * kThreads;  // elements per block in adamw_multi

template <typename G>
__global__ void adamw_kernel(float* p, float* m, float* v, const G* g, size_t n, rowmath::AdamWParams a) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    rowmath::adamw_elem(p[i], m[i], v[i], static_cast<float>(g[i]), a);
}

// Passed by value as a kernel parameter (well under the 4 KB limit).
template <typename G>
struct AdamWLaunch {
  AdamWTensor<G> t[kAdamWMaxTensors];
  unsigned first_block[kAdamWMaxTensors + 1];  // block range of tensor i: [first_block[i], first_block[i+1])
  int count;
};

// Block b updates chunk (b - first_block[i]) of the tensor i that owns it.
template <typename G>
__global__ void adamw_multi_kernel(AdamWLaunch<G> launch, rowmath::AdamWParams a) {
  int i = 0;
  while (i + 1 < launch.count && blockIdx.x >= launch.first_block[i + 1]) ++i;
  const AdamWTensor<G>& t = launch.t[i];
  const size_t begin = size_t(blockIdx.x - launch.first_block[i]) * kChunk;
  const size_t end = begin + kChunk < t.n ? begin + kChunk : t.n;
  for (size_t j = begin + threadIdx.x; j < end; j += blockDim.x)
    rowmath::adamw_elem(t.p[j], t.m[j], t.v[j], static_cast<float>(t.g[j]), a);
}
}  // namespace

template <typename G>
void adamw(float* p, float* m, float* v, const G* g, size_t n, const rowmath::AdamWParams& a, cudaStream_t stream) {
  if (n == 0) return;
  adamw_kernel<<<grid_1d(n, kThreads), kThreads, 0, stream>>>(p, m, v, g, n, a);
  LLAMAFT_LAUNCH_CHECK();
}

template <typename G>
void adamw_multi(const AdamWTensor<G>* tensors, int count, const rowmath::AdamWParams& a, cudaStream_t stream) {
  AdamWLaunch<G> launch{};
  unsigned blocks = 0;
  auto flush = [&] {
    if (launch.count == 0) return;
    adamw_multi_kernel<<<blocks, kThreads, 0, stream>>>(launch, a);
    LLAMAFT_LAUNCH_CHECK();
    launch = AdamWLaunch<G>{};
    blocks = 0;
  };
  for (int i = 0; i < count; ++i) {
    const size_t chunks = (tensors[i].n + kChunk - 1) / kChunk;
    if (chunks == 0) continue;
    LLAMAFT_CHECK(chunks < (1u << 30), "adamw_multi: tensor of ", tensors[i].n, " elements is too large");
    if (launch.count == kAdamWMaxTensors || blocks + chunks > (1u << 30)) flush();
    launch.t[launch.count] = tensors[i];
    launch.first_block[launch.count] = blocks;
    blocks += static_cast<unsigned>(chunks);
    launch.first_block[++launch.count] = blocks;
  }
  flush();
}

template void adamw<float>(float*, float*, float*, const float*, size_t, const rowmath::AdamWParams&, cudaStream_t);
template void adamw_multi<float>(const AdamWTensor<float>*, int, const rowmath::AdamWParams&, cudaStream_t);

}  // namespace llamaft::cuda
