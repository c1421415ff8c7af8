#include "cli/runtime.hpp"

#include <omp.h>

#include "backend/registry.hpp"
#include "comm/communicator.hpp"
#ifdef LLAMAFT_HAS_CUDA
#include "comm/nccl_comm.hpp"
#endif

namespace llamaft {

void apply_runtime_settings(const Config& cfg) {
  const int threads = static_cast<int>(cfg.get_int("runtime.threads"));
  if (threads > 0) omp_set_num_threads(threads);
}

std::unique_ptr<Backend> make_backend(const Config& cfg) {
  const std::string name = cfg.get_string("runtime.backend");
  int device = 0;
#ifdef LLAMAFT_HAS_CUDA
  // One GPU per rank: the local rank's device among those visible (all of a
  // node's GPUs, or the one Slurm's --gpus-per-task leaves each rank).
  if (name == "cuda") device = pick_local_device(mpi_world().local_rank);
#endif
  return make_backend(name, device);
}

}  // namespace llamaft
