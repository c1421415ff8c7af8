#include "cross_entropy.cuh"
#include "cuda_common.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kThreads = 256;

__device__ rowmath::SoftmaxStat block_merge(rowmath::SoftmaxStat s) {
  __shared__ float smax[kThreads], ssum[kThreads];
  smax[threadIdx.x] = s.max;
  ssum[threadIdx.x] = s.sum;
  __syncthreads();
  for (unsigned o = blockDim.x / 2; o > 0; o /= 2) {
    if (threadIdx.x < o) {
      const rowmath::SoftmaxStat m = rowmath::softmax_stat_merge({smax[threadIdx.x], ssum[threadIdx.x]},
                                                                 {smax[threadIdx.x + o], ssum[threadIdx.x + o]});
      smax[threadIdx.x] = m.max;
      ssum[threadIdx.x] = m.sum;
    }
    __syncthreads();
  }
  return {smax[0], ssum[0]};
}

// One block per row: an online softmax pass, then the gradient pass.
__global__ void cross_entropy_rows_kernel(float* logits, const int32_t* labels, float* loss, int vocab, float scale) {
  float* row = logits + size_t(blockIdx.x) * vocab;
  const int label = labels[blockIdx.x];
  if (label == rowmath::kIgnoreIndex) {
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) row[i] = 0.f;
    if (threadIdx.x == 0) loss[blockIdx.x] = 0.f;
    return;
  }
  rowmath::SoftmaxStat s = rowmath::softmax_stat_init();
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) s = rowmath::softmax_stat_push(s, row[i]);
  const float lse = rowmath::softmax_stat_lse(block_merge(s));
  if (threadIdx.x == 0) loss[blockIdx.x] = lse - row[label];
  __syncthreads();  // the label's logit is read above before it is overwritten
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) row[i] = rowmath::ce_grad_elem(row[i], lse, i == label, scale);
}
}  // namespace

void cross_entropy_rows(float* logits, const int32_t* labels, float* loss, int rows, int vocab, float scale,
                        cudaStream_t stream) {
  if (rows == 0) return;
  cross_entropy_rows_kernel<<<rows, kThreads, 0, stream>>>(logits, labels, loss, vocab, scale);
  LLAMAFT_LAUNCH_CHECK();
}

}  // namespace llamaft::cuda
