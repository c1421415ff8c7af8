#include "cross_entropy.cuh"
#include "cuda_common.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kThreads = 256;

int chunks_for(int vocab) { return (vocab + kCrossEntropyChunk - 1) / kCrossEntropyChunk; }

// Grid (rows, chunks): stats[row][chunk] over logits[row][chunk's columns].
template <typename T>
__global__ void cross_entropy_fwd_kernel(const T* logits, const int32_t* labels, int vocab,
                                         rowmath::SoftmaxStat* stats) {
  __shared__ float smax[32], ssum[32];
  const int row = blockIdx.x, chunk = blockIdx.y;
  if (labels[row] == rowmath::kIgnoreIndex) return;  // whole block
  const T* x = logits + size_t(row) * vocab;  // (vocab)
  const int i0 = chunk * kCrossEntropyChunk, i1 = min(vocab, i0 + kCrossEntropyChunk);
  rowmath::SoftmaxStat s = rowmath::softmax_stat_init();
  for (int i = i0 + threadIdx.x; i < i1; i += blockDim.x) s = rowmath::softmax_stat_push(s, static_cast<float>(x[i]));
  s = block_merge(s, smax, ssum);
  if (threadIdx.x == 0) stats[size_t(row) * gridDim.y + chunk] = s;
}

// Grid (rows, chunks): loss from the label's block, then gradient over the chunk.
template <typename T>
__global__ void cross_entropy_bwd_kernel(T* logits, const int32_t* labels, const rowmath::SoftmaxStat* stats,
                                         float* loss, int vocab, float scale) {
  const int row = blockIdx.x, chunk = blockIdx.y, chunks = gridDim.y;
  T* x = logits + size_t(row) * vocab;  // (vocab)
  const int i0 = chunk * kCrossEntropyChunk, i1 = min(vocab, i0 + kCrossEntropyChunk);
  const int label = labels[row];
  if (label == rowmath::kIgnoreIndex) {  // whole block
    for (int i = i0 + threadIdx.x; i < i1; i += blockDim.x) x[i] = static_cast<T>(0.f);
    if (chunk == 0 && threadIdx.x == 0) loss[row] = 0.f;
    return;
  }
  rowmath::SoftmaxStat s = rowmath::softmax_stat_init();
  for (int c = 0; c < chunks; ++c) s = rowmath::softmax_stat_merge(s, stats[size_t(row) * chunks + c]);
  const float lse = rowmath::softmax_stat_lse(s);
  if (threadIdx.x == 0) {
    if (label >= i0 && label < i1)
      loss[row] = lse - static_cast<float>(x[label]);
    else if (chunk == 0 && (label < 0 || label >= vocab))
      loss[row] = NAN;
  }
  __syncthreads();  // the label's logit is read above before it is overwritten
  for (int i = i0 + threadIdx.x; i < i1; i += blockDim.x)
    x[i] = static_cast<T>(rowmath::ce_grad_elem(static_cast<float>(x[i]), lse, i == label, scale));
}
}  // namespace

size_t cross_entropy_workspace_floats(int rows, int vocab) {
  if (rows <= 0 || vocab <= 0) return 0;
  return size_t(rows) * chunks_for(vocab) * (sizeof(rowmath::SoftmaxStat) / sizeof(float));
}

template <typename T>
void cross_entropy_rows(T* logits, const int32_t* labels, float* loss, int rows, int vocab, float scale,
                        float* workspace, cudaStream_t stream) {
  if (rows <= 0) return;
  LLAMAFT_CHECK(vocab > 0, "cross_entropy_rows: vocab ", vocab);
  LLAMAFT_CHECK(workspace != nullptr, "cross_entropy_rows needs a workspace of ",
                cross_entropy_workspace_floats(rows, vocab), " floats");
  auto* stats = reinterpret_cast<rowmath::SoftmaxStat*>(workspace);  // (rows, chunks)
  const dim3 grid(rows, chunks_for(vocab));
  cross_entropy_fwd_kernel<<<grid, kThreads, 0, stream>>>(logits, labels, vocab, stats);
  LLAMAFT_LAUNCH_CHECK();
  cross_entropy_bwd_kernel<<<grid, kThreads, 0, stream>>>(logits, labels, stats, loss, vocab, scale);
  LLAMAFT_LAUNCH_CHECK();
}

template void cross_entropy_rows<float>(float*, const int32_t*, float*, int, int, float, float*, cudaStream_t);
template void cross_entropy_rows<bf16>(bf16*, const int32_t*, float*, int, int, float, float*, cudaStream_t);

}  // namespace llamaft::cuda
