// The CUDA backend (fp32 storage for now; bf16 comes with the CUDA issue):
// cuBLAS GEMMs, kernels/ for everything else, a caching allocator so the
// step loop does not call cudaMalloc after the first step.
#pragma once

#include <memory>

#include "backend/backend.hpp"

namespace llamaft {

// False (never throws) when there is no driver or no device.
bool cuda_device_available();
std::unique_ptr<Backend> make_cuda_backend(int device);

}  // namespace llamaft
