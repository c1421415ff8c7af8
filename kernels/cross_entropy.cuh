// Cross-entropy over rows of logits, in place: loss per row and the gradient
// of scale * loss written over the logits (the model runs this per chunk of
// rows, so no (B*T, V) logits buffer is ever alive).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llamaft::cuda {

void cross_entropy_rows(float* logits, const int32_t* labels, float* loss, int rows, int vocab, float scale,
                        cudaStream_t stream);

}  // namespace llamaft::cuda
