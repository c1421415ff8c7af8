#include "cuda_common.cuh"
#include "quant.cuh"

namespace llamaft::cuda {

namespace {
constexpr unsigned kThreads = 256;

template <typename T>
__global__ void dequantize_items_kernel(const float* regions, const quant::DequantItem* items, quant::Kind kind,
                                        const float* map, T* out) {
  const quant::DequantItem it = items[blockIdx.x];
  const float* item = regions + it.src_word;
  T* dst = out + it.dst;
  if (kind == quant::Kind::kNf4) {
    const float offset = regions[it.offset_word];
    for (int64_t j = threadIdx.x; j < it.count; j += blockDim.x)
      dst[j] = static_cast<T>(quant::nf4_item_value(item, it.count, j, map, offset));
  } else if (kind == quant::Kind::kNf4Plain) {
    for (int64_t j = threadIdx.x; j < it.count; j += blockDim.x) dst[j] = static_cast<T>(quant::nf4_plain_item_value(item, it.count, j));
  } else if (kind == quant::Kind::kBf16) {
    for (int64_t j = threadIdx.x; j < it.count; j += blockDim.x) dst[j] = static_cast<T>(quant::bf16_item_value(item, j));
  } else {
    for (int64_t j = threadIdx.x; j < it.count; j += blockDim.x) dst[j] = static_cast<T>(quant::int8_item_value(item, it.count, j));
  }
}

template <typename T>
__global__ void dropout_kernel(const T* x, T* out, int rows, int cols, int seq, const uint64_t* keys,
                               uint64_t salt, float p) {
  const size_t total = size_t(rows) * cols;
  for (size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x; idx < total; idx += size_t(gridDim.x) * blockDim.x) {
    const size_t r = idx / cols, c = idx % cols;
    out[idx] = static_cast<T>(static_cast<float>(x[idx]) *
                              rowmath::dropout_factor(keys[r / seq], salt, uint64_t(r % seq) * cols + c, p));
  }
}
}  // namespace

template <typename T>
void dequantize_items(const float* regions, const quant::DequantItem* items, int n_items, quant::Kind kind,
                      const float* map, T* out, cudaStream_t stream) {
  if (n_items <= 0) return;
  dequantize_items_kernel<<<unsigned(n_items), kThreads, 0, stream>>>(regions, items, kind, map, out);
  LLAMAFT_LAUNCH_CHECK();
}

template <typename T>
void dropout(const T* x, T* out, int rows, int cols, int seq, const uint64_t* keys, uint64_t salt, float p,
             cudaStream_t stream) {
  const size_t total = size_t(rows > 0 ? rows : 0) * (cols > 0 ? cols : 0);
  if (total == 0) return;
  dropout_kernel<<<grid_1d(total, kThreads), kThreads, 0, stream>>>(x, out, rows, cols, seq, keys, salt, p);
  LLAMAFT_LAUNCH_CHECK();
}


template void dequantize_items<float>(const float*, const quant::DequantItem*, int, quant::Kind, const float*, float*,
                                      cudaStream_t);
template void dequantize_items<bf16>(const float*, const quant::DequantItem*, int, quant::Kind, const float*, bf16*,
                                     cudaStream_t);
template void dropout<float>(const float*, float*, int, int, int, const uint64_t*, uint64_t, float, cudaStream_t);
template void dropout<bf16>(const bf16*, bf16*, int, int, int, const uint64_t*, uint64_t, float, cudaStream_t);

}  // namespace llamaft::cuda
