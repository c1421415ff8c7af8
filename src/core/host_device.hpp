// LLAMAFT_HD marks the small inline functions that the CPU code and the CUDA
// kernels share (row math, dtype conversions, quantization codes): __host__
// __device__ under nvcc, plain inline in g++ builds, so no CUDA header is
// needed to declare them.
#pragma once

#if defined(__CUDACC__)
#define LLAMAFT_HD __host__ __device__ __forceinline__
#else
#define LLAMAFT_HD inline
#endif
