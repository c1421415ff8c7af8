// Settings shared by the commands: threads and the backend (runtime.*),
// parsed once by RuntimeSettings. runtime.comm_timeout_s is read by the
// collective commands (train's TrainSettings, eval --task).
#pragma once

#include <memory>
#include <string>

#include "backend/backend.hpp"
#include "config/config.hpp"

namespace llamaft {

struct RuntimeSettings {
  int threads = 0;       // runtime.threads (0: OMP_NUM_THREADS or all cores)
  std::string backend;   // runtime.backend: cpu | cuda
  bool share_gpus = false;

  static RuntimeSettings from_config(const Config& cfg);
};

void apply_runtime_settings(const Config& cfg);
std::unique_ptr<Backend> make_backend(const Config& cfg);

}  // namespace llamaft
