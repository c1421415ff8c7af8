// Picks the communicator that FSDP's collectives run on, from the backend:
// NCCL on the backend's stream when the backend has one (CUDA), otherwise the
// MPI world itself (host buffers). With backend/registry.cpp and CMake, the
// only place that knows whether NCCL was built.
#pragma once

#include <memory>

#include "backend/backend.hpp"
#include "comm/communicator.hpp"

namespace llamaft {

// `world` is the MPI communicator of every rank (make_mpi_world_comm). When
// be.native_stream() is set, returns an NCCL communicator over the same
// ranks on device be.device_ordinal(), ordered on that stream, whose
// collectives abort the job after timeout_s without progress
// (runtime.comm_timeout_s). Otherwise returns nullptr: use `world`. So
//   auto device_comm = make_device_communicator(*be, *world, timeout_s);
//   Communicator& fsdp_comm = device_comm ? *device_comm : *world;
std::unique_ptr<Communicator> make_device_communicator(Backend& be, Communicator& world, double timeout_s);

}  // namespace llamaft
