#include "backend/registry.hpp"

#include "core/error.hpp"

#ifdef LLAMAFT_HAS_CUDA
#include "backend/cuda/cuda_backend.hpp"
#endif

namespace llamaft {

bool cuda_backend_built() {
#ifdef LLAMAFT_HAS_CUDA
  return true;
#else
  return false;
#endif
}

int pick_device(const std::string& name, int local_rank) {
#ifdef LLAMAFT_HAS_CUDA
  // One GPU per rank.
  if (name == "cuda") return pick_local_device(local_rank);
#endif
  return 0;
}

std::unique_ptr<Backend> make_backend(const std::string& name, int device, int world_size) {
  (void)world_size;  // used only with CUDA
  if (name == "cpu") return make_cpu_backend();
  if (name == "cuda") {
#ifdef LLAMAFT_HAS_CUDA
    const CudaProbe probe = probe_cuda();
    LLAMAFT_REQUIRE(probe.available, "runtime.backend = cuda but ",
                    probe.error.empty() ? std::string("no CUDA device is visible") : probe.error);
    return make_cuda_backend(device, 0, world_size > 1 ? 3 : 0);
#else
    LLAMAFT_FAIL("runtime.backend = cuda but this llamaft was built without CUDA (LLAMAFT_CUDA=OFF)");
#endif
  }
  LLAMAFT_FAIL("unknown backend '", name, "' (cpu or cuda)");
}

}  // namespace llamaft
