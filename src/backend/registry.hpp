// Picks a backend by name, and the device it computes on. The only place
// (with comm/registry.cpp and CMake) that knows whether CUDA was built.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.hpp"

namespace llamaft {

bool cuda_backend_built();
// The device this process computes on for backend `name`: for "cuda" the
// local rank's GPU among those visible (all of a node's GPUs, or the one
// Slurm's --gpus-per-task leaves each rank), made current; 0 for "cpu" (and
// for "cuda" in a build without it, where make_backend then says so).
int pick_device(const std::string& name, int local_rank, int local_size = 1, bool share_gpus = false);
// More ranks on a host than GPUs visible to them: ranks would share a GPU
// (each needs the memory its plan counts, and NCCL refuses two ranks on one
// device). A user error naming the host and the fix, unless
// runtime.share_gpus says so. Pure, for the tests.
void check_gpu_sharing(int local_size, int devices, bool share_gpus, const std::string& host);
// What the CUDA backend leaves outside its memory pool on a GPU of
// `gpu_total_bytes`: max(2 GiB, 1/32 of the GPU) for the CUDA context,
// cuBLAS workspaces and fragmentation, plus 2 GiB per NCCL communicator (FSDP
// uses 3 at np > 1: the world, the shard group, the replica group). `plan`
// adds it for runtime.backend = cuda.
// Inline: the CUDA library (kernels/) uses it without linking this one.
constexpr size_t kNcclReservePerCommBytes = size_t(2) << 30;
inline size_t cuda_pool_reserve_bytes(size_t gpu_total_bytes, int nccl_comms) {
  const size_t context = gpu_total_bytes / 32 > (size_t(2) << 30) ? gpu_total_bytes / 32 : size_t(2) << 30;
  return context + kNcclReservePerCommBytes * static_cast<size_t>(nccl_comms > 0 ? nccl_comms : 0);
}
// "cpu" or "cuda"; device is the local GPU index for "cuda".
// world_size > 1: the CUDA pool leaves room for FSDP's NCCL communicators
// (the device world, the shard group and the replica group).
std::unique_ptr<Backend> make_backend(const std::string& name, int device = 0, int world_size = 1);

}  // namespace llamaft
