// Cross-entropy over rows of logits, in place: loss per row and the gradient
// of scale * loss written over the logits (the model runs this per chunk of
// rows, so no (B*T, V) logits buffer is ever alive).
// Each row is split into vocab chunks of kCrossEntropyChunk: the forward
// kernel writes one rowmath::SoftmaxStat per (row, chunk), the backward kernel
// merges a row's stats (softmax_stat_merge, fixed order) into its lse, writes
// the loss from the block that owns the label and the gradient of its chunk.
// A label outside [0, vocab) other than -100 gives loss NaN, so the NaN policy
// stops the run instead of reading out of bounds.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace llamaft::cuda {

constexpr int kCrossEntropyChunk = 8192;

// Floats of workspace cross_entropy_rows needs.
size_t cross_entropy_workspace_floats(int rows, int vocab);

// logits(rows, vocab) replaced by the gradient; labels(rows); loss(rows)
template <typename T>
void cross_entropy_rows(T* logits, const int32_t* labels, float* loss, int rows, int vocab, float scale,
                        float* workspace, cudaStream_t stream);

}  // namespace llamaft::cuda
