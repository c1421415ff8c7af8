#include "cli/runtime.hpp"

#include <omp.h>

#include "backend/registry.hpp"
#include "comm/communicator.hpp"

namespace llamaft {

void apply_runtime_settings(const Config& cfg) {
  const int threads = static_cast<int>(cfg.get_int("runtime.threads"));
  if (threads > 0) omp_set_num_threads(threads);
}

std::unique_ptr<Backend> make_backend(const Config& cfg) {
  const std::string name = cfg.get_string("runtime.backend");
  return make_backend(name,
                      pick_device(name, mpi_world().local_rank, mpi_world().local_size, cfg.get_bool("runtime.share_gpus")),
                      mpi_world().size);
}

}  // namespace llamaft
