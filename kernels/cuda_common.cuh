// Shared by every kernel file: launch checks and block reductions.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>

#include "backend/cuda/cuda_check.hpp"
#include "backend/row_math.hpp"

namespace llamaft::cuda {

constexpr int kWarp = 32;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block; every thread gets the result. `scratch` holds 32 floats.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + kWarp - 1) / kWarp;
  v = threadIdx.x < warps ? scratch[threadIdx.x] : 0.f;
  if (warp == 0) v = warp_sum(v);
  if (threadIdx.x == 0) scratch[0] = v;
  __syncthreads();
  return scratch[0];
}

inline unsigned blocks_for(size_t n, unsigned threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

// A 1-D grid for grid-stride loops over n elements.
inline unsigned grid_1d(size_t n, unsigned threads) {
  return n == 0 ? 1u : std::min<unsigned>(65535u, blocks_for(n, threads));
}

}  // namespace llamaft::cuda

// After every launch: the launch itself must have succeeded.
#define LLAMAFT_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())
