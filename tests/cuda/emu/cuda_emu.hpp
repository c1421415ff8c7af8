// A CPU emulator for llamaft's CUDA kernels, for machines without a GPU.
// Not part of the build: tests/cuda/emu/run_emu.sh rewrites each kernel
// launch `k<<<grid, block, smem, stream>>>(args)` into emu::launch(...) and
// `extern __shared__` arrays into the block's dynamic buffer, compiles the
// kernels, the CUDA backend and tests/cuda/*.cpp with g++ against these fake
// CUDA headers, and runs the GPU tests on the CPU.
//
// Every CUDA thread is a fiber (ucontext) on one OS thread. A fiber runs until
// it reaches __syncthreads() or a warp collective (shuffle, __syncwarp); a
// block runs until every fiber has finished. So barriers, shuffles and shared
// memory behave as on the GPU, divergent barriers are reported as deadlocks,
// and running the threads in forward and in reverse order (LLAMAFT_EMU_ORDER=
// reverse) exposes most missing __syncthreads(). Blocks run one at a time,
// so `__shared__` is a function-local static. Not modelled: device math
// precision; memory-model races between blocks; a shuffle here also orders
// shared memory within the warp, which on hardware needs __syncwarp(); resource
// limits other than threads per block, grid dimensions and the shared memory
// opt-in (sm_80's 163 KB); registers and speed.
#pragma once

#define LLAMAFT_CUDA_EMULATOR 1

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

// ---- qualifiers -------------------------------------------------------------------
#define __host__
#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;

// ---- runtime types ----------------------------------------------------------------
typedef struct CUstream_st* cudaStream_t;
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorNotReady = 600,
};
typedef struct CUevent_st* cudaEvent_t;
constexpr unsigned cudaEventDisableTiming = 2;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
constexpr unsigned cudaStreamNonBlocking = 1;

namespace emu {

// Launches body once per thread of every block (blocks in order).
void launch_impl(const std::function<void()>& body, dim3 grid, dim3 block, size_t dynamic_smem);
template <typename F>
void launch(F&& body, dim3 grid, dim3 block, size_t dynamic_smem = 0, cudaStream_t = nullptr) {
  launch_impl(std::function<void()>(std::forward<F>(body)), grid, block, dynamic_smem);
}
unsigned char* dynamic_smem();
void syncthreads();
void syncwarp();
// Warp exchange: every lane publishes 8 bytes, then reads lane `src`'s.
uint64_t exchange(uint64_t mine, int src_lane);
void set_error(cudaError_t e);
int max_dynamic_smem();
// Kernel launches since the process started (valid ones, run or not).
long long launches();
// LLAMAFT_EMU_DRY=1: launches, copies, memsets and GEMMs are checked and
// counted but not executed, device memory is reserved without being touched
// and the device reports an H200's memory, so the real CUDA backend can be
// driven at full model size for its StepCounters (bench/roofline.py).
bool dry();
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 over the calling warp:
// every lane publishes its fragments, each lane's d is computed from the
// matrices they assemble into (kernels/mma_sync.cuh documents the layout).
void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]);
// cp.async: queued per thread; a thread's copies happen only when
// cp_async_wait lets their group complete (a block that exits with copies
// still queued aborts, as a missing wait would be a race on the GPU).
void cp_async(void* dst, const void* src, size_t bytes);
void cp_async_commit();
void cp_async_wait(int pending);

template <typename T>
T shuffle(T v, int src_lane) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type the GPU cannot shuffle");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = exchange(bits, src_lane);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}
inline int lane_id() { return int(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32; }

}  // namespace emu

// ---- device intrinsics -----------------------------------------------------------------
inline void __syncthreads() { emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::syncwarp(); }
inline void __threadfence() {}
inline void __threadfence_block() {}

template <typename T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
  const int lane = emu::lane_id();
  return emu::shuffle(v, (lane & ~(width - 1)) + (src % width));
}
template <typename T>
T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  const int lane = emu::lane_id();
  const int src = lane ^ mask;
  return emu::shuffle(v, src / width == lane / width ? src : lane);
}
template <typename T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = emu::lane_id();
  const int src = lane + int(delta);
  return emu::shuffle(v, src / width == lane / width ? src : lane);
}

// One OS thread runs every fiber and fibers switch only at barriers: atomics are plain.
template <typename T>
T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
inline int atomicMin(int* p, int v) {
  const int old = *p;
  if (v < old) *p = v;
  return old;
}
inline int atomicMax(int* p, int v) {
  const int old = *p;
  if (v > old) *p = v;
  return old;
}

template <typename A, typename B>
inline std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}
template <typename A, typename B>
inline std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
inline float __fdividef(float a, float b) { return a / b; }

// ---- runtime API -----------------------------------------------------------------------
const char* cudaGetErrorString(cudaError_t e);
const char* cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaMalloc(void** p, size_t bytes);
template <typename T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();
// Events: the emulator runs everything at once, so an event is always complete.
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
template <typename F>
cudaError_t cudaFuncSetAttribute(F*, cudaFuncAttribute, int value) {
  return value <= emu::max_dynamic_smem() ? cudaSuccess : cudaErrorInvalidValue;
}
