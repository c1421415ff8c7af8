// Sum and sum of squares of a flat buffer in double (loss totals, gradient
// norms). Deterministic: a fixed number of blocks for a given n writes
// per-block partials, one block adds them in a fixed order; no atomics.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace llamaft::cuda {

// Partials buffer the caller provides: reduce_partials_needed doubles.
constexpr size_t reduce_partials_needed() { return 1024; }

// *out (device) = sum of x[i] (or of x[i]^2 when squares), in double.
template <typename T>
void reduce_sum(const T* x, size_t n, bool squares, double* partials, double* out, cudaStream_t stream);

}  // namespace llamaft::cuda
