// Shared by every kernel file: the launch check, warp/block reductions and
// 1-D grid sizing. Kernels are templated on the storage type T and do their
// arithmetic in float (double for the loss/norm reductions): a load is
// static_cast<float>(x), a store static_cast<T>(y), which also works for
// __nv_bfloat16 when bf16 storage is instantiated.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

#include "backend/cuda/cuda_check.hpp"
#include "backend/row_math.hpp"
#include "core/dtype.hpp"
#include "launch_count.cuh"

namespace llamaft::cuda {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Sum / max over aligned groups of kWidth consecutive lanes (kWidth a power of
// two <= 32); every lane of the group gets the result. All 32 lanes must call.
template <int kWidth, typename V>
__device__ __forceinline__ V group_sum(V v) {
  for (int o = kWidth / 2; o > 0; o /= 2) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
template <int kWidth>
__device__ __forceinline__ float group_max(float v) {
  for (int o = kWidth / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}
template <typename V>
__device__ __forceinline__ V warp_sum(V v) {
  return group_sum<kWarp>(v);
}

// Online-softmax statistics merged across the warp with rowmath's combine.
__device__ __forceinline__ rowmath::SoftmaxStat warp_merge(rowmath::SoftmaxStat s) {
  for (int o = kWarp / 2; o > 0; o /= 2) {
    const rowmath::SoftmaxStat other{__shfl_xor_sync(kFullMask, s.max, o), __shfl_xor_sync(kFullMask, s.sum, o)};
    s = rowmath::softmax_stat_merge(s, other);
  }
  return s;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result. `scratch` is shared memory for 32 values. Contains
// __syncthreads(): every thread of the block must call it.
template <typename V>
__device__ __forceinline__ V block_sum(V v, V* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : V(0);
  return warp_sum(v);
}

// Same for softmax statistics; `smax`/`ssum` hold 32 floats each.
__device__ __forceinline__ rowmath::SoftmaxStat block_merge(rowmath::SoftmaxStat s, float* smax, float* ssum) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  s = warp_merge(s);
  __syncthreads();
  if (lane == 0) {
    smax[warp] = s.max;
    ssum[warp] = s.sum;
  }
  __syncthreads();
  s = lane < warps ? rowmath::SoftmaxStat{smax[lane], ssum[lane]} : rowmath::softmax_stat_init();
  return warp_merge(s);
}

// Opts a kernel in to `bytes` of dynamic shared memory past the 48 KB default
// (a no-op below it), or fails with a message naming `what` when the GPU's
// per-block limit is smaller.
template <typename Kernel>
void opt_in_shared_memory(Kernel* kernel, size_t bytes, const char* what) {
  if (bytes <= size_t(48 * 1024)) return;
  int device = 0, limit = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  LLAMAFT_REQUIRE(bytes <= size_t(limit), what, " needs ", bytes, " bytes of shared memory per block; this GPU allows ",
                  limit);
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

inline unsigned blocks_for(size_t n, unsigned threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

// A 1-D grid for grid-stride loops over n elements (enough blocks to fill any
// current GPU; the loop covers the rest).
inline unsigned grid_1d(size_t n, unsigned threads) {
  const size_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<size_t>(blocks, 1, 16384));
}

}  // namespace llamaft::cuda

// After every launch: the launch itself must have succeeded, and it is
// counted (launches_issued(), which the backend's StepCounters read).
#define LLAMAFT_LAUNCH_CHECK()        \
  do {                                \
    ::llamaft::cuda::note_launch();   \
    CUDA_CHECK(cudaGetLastError());   \
  } while (0)
