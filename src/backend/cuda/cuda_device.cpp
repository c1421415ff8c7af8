// Which CUDA device a rank gets, and whether there is one: the probe that
// tells a machine without a GPU (skip) from a broken driver (an error), the
// node-local pick, and the default memory pool beside NCCL's reservations.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "backend/registry.hpp"
#include "core/error.hpp"

namespace llamaft {

CudaProbe classify_cuda_probe(int error, const char* error_text, int devices, bool driver_library_present) {
  CudaProbe p;
  if (error == cudaSuccess) {
    p.available = devices > 0;
    return p;
  }
  // No driver library at all is a machine without a GPU (CI); a driver that is
  // there but refuses (too old for this runtime, broken install) is an error
  // a GPU job must report, not a reason to skip.
  if (error == cudaErrorNoDevice || (error == cudaErrorInsufficientDriver && !driver_library_present)) return p;
  p.error = str_cat("cudaGetDeviceCount failed: ", error_text, " (error ", error, ")",
                    error == cudaErrorInsufficientDriver
                        ? "; the NVIDIA driver is older than this CUDA runtime needs: update the driver or "
                          "build against an older CUDA toolkit"
                        : "");
  return p;
}

CudaProbe probe_cuda() {
  int n = 0;
  const cudaError_t rc = cudaGetDeviceCount(&n);
  if (rc != cudaSuccess) cudaGetLastError();  // later calls start clean
  void* lib = rc == cudaErrorInsufficientDriver ? dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD) : nullptr;
  if (rc == cudaErrorInsufficientDriver && !lib) lib = dlopen("libcuda.so.1", RTLD_LAZY);
  const bool present = lib != nullptr;
  if (lib) dlclose(lib);
  return classify_cuda_probe(rc, cudaGetErrorString(rc), n, present);
}

bool cuda_device_available() { return probe_cuda().available; }

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

int pick_local_device(int local_rank) {
  LLAMAFT_CHECK(local_rank >= 0, "local rank ", local_rank);
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess || count <= 0) {
    if (rc != cudaSuccess) cudaGetLastError();
    LLAMAFT_FAIL(where_prefix(), "no CUDA device visible on host ", process_host(), " (",
                 rc != cudaSuccess ? cudaGetErrorString(rc) : "0 devices",
                 "); runtime.backend=cuda needs one GPU per rank: request GPUs for the job, check "
                 "CUDA_VISIBLE_DEVICES, or use runtime.backend=cpu");
  }
  // More ranks than GPUs on a node: pick_device refuses it unless
  // runtime.share_gpus (check_gpu_sharing).
  const int device = local_rank % count;
  CUDA_CHECK(cudaSetDevice(device));
  return device;
}

size_t cuda_default_pool_bytes(size_t free_bytes, size_t total_bytes, int nccl_comms) {
  const size_t reserve = cuda_pool_reserve_bytes(total_bytes, nccl_comms);
  return free_bytes > 2 * reserve ? free_bytes - reserve : free_bytes / 2;
}

}  // namespace llamaft
