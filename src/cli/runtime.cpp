#include "cli/runtime.hpp"

#include <omp.h>

#include "backend/registry.hpp"
#include "comm/communicator.hpp"

namespace llamaft {

RuntimeSettings RuntimeSettings::from_config(const Config& cfg) {
  RuntimeSettings r;
  r.threads = static_cast<int>(cfg.get_int("runtime.threads"));
  r.backend = cfg.get_string("runtime.backend");
  r.share_gpus = cfg.get_bool("runtime.share_gpus");
  return r;
}

void apply_runtime_settings(const Config& cfg) {
  const int threads = RuntimeSettings::from_config(cfg).threads;
  if (threads > 0) omp_set_num_threads(threads);
}

std::unique_ptr<Backend> make_backend(const Config& cfg) {
  const RuntimeSettings r = RuntimeSettings::from_config(cfg);
  return make_backend(r.backend, pick_device(r.backend, mpi_world().local_rank, mpi_world().local_size, r.share_gpus),
                      mpi_world().size);
}

}  // namespace llamaft
