// Picks a backend by name. The only place that knows whether CUDA was built.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.hpp"

namespace llamaft {

bool cuda_backend_built();
// "cpu" or "cuda"; device is the local GPU index for "cuda".
std::unique_ptr<Backend> make_backend(const std::string& name, int device = 0);

}  // namespace llamaft
