#include "backend/registry.hpp"

#include <algorithm>

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

void check_gpu_sharing(int local_size, int devices, bool share_gpus, const std::string& host) {
  if (share_gpus || devices <= 0 || local_size <= devices) return;
  LLAMAFT_FAIL(local_size, " ranks on host ", host, " see ", devices, " GPU", devices == 1 ? "" : "s",
               ": ranks would share a GPU. Run one rank per GPU (#SBATCH --ntasks-per-node equal to "
               "--gpus-per-node, or mpirun -np with one rank per visible device; check CUDA_VISIBLE_DEVICES), "
               "or set runtime.share_gpus = true to share them knowingly");
}

int pick_device(const std::string& name, int local_rank, int local_size, bool share_gpus) {
#ifdef LLAMAFT_HAS_CUDA
  // One GPU per rank.
  if (name == "cuda") {
    const int device = pick_local_device(local_rank);
    check_gpu_sharing(local_size, cuda_device_count(), share_gpus, process_host());
    return device;
  }
#endif
  (void)local_rank, (void)local_size, (void)share_gpus;
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
