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
int pick_device(const std::string& name, int local_rank);
// "cpu" or "cuda"; device is the local GPU index for "cuda".
// world_size > 1: the CUDA pool leaves room for FSDP's NCCL communicators
// (the device world, the shard group and the replica group).
std::unique_ptr<Backend> make_backend(const std::string& name, int device = 0, int world_size = 1);

}  // namespace llamaft
