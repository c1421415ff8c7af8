// CUDA_CHECK / CUBLAS_CHECK: a failure becomes llamaft::Error (exit code
// kExitInternal) carrying rank and host, the failed statement and file:line,
// so main() prints it once and brings every rank down.
// Destructors must not throw: they call the CUDA API without these macros.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/error.hpp"

#define CUDA_CHECK(stmt)                                                                              \
  do {                                                                                                \
    const cudaError_t cuda_rc_ = (stmt);                                                              \
    if (cuda_rc_ != cudaSuccess)                                                                      \
      throw ::llamaft::Error(::llamaft::str_cat(::llamaft::where_prefix(), "CUDA error in `", #stmt,  \
                                                "` at ", __FILE__, ":", __LINE__, ": ",               \
                                                cudaGetErrorName(cuda_rc_), ": ",                     \
                                                cudaGetErrorString(cuda_rc_)),                        \
                             ::llamaft::kExitInternal);                                               \
  } while (0)

#define CUBLAS_CHECK(stmt)                                                                            \
  do {                                                                                                \
    const cublasStatus_t cublas_rc_ = (stmt);                                                         \
    if (cublas_rc_ != CUBLAS_STATUS_SUCCESS)                                                          \
      throw ::llamaft::Error(::llamaft::str_cat(::llamaft::where_prefix(), "cuBLAS error in `",       \
                                                #stmt, "` at ", __FILE__, ":", __LINE__, ": ",        \
                                                cublasGetStatusString(cublas_rc_), " (status ",       \
                                                static_cast<int>(cublas_rc_), ")"),                   \
                             ::llamaft::kExitInternal);                                               \
  } while (0)
