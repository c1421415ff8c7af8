// `llamaft train`: full fine-tuning, LoRA and QLoRA with FSDP over MPI. The
// work is src/train/Trainer; this command applies the runtime settings and
// hands the Trainer the backend the configuration names.
#include "cli/command.hpp"
#include "cli/runtime.hpp"
#include "comm/communicator.hpp"
#include "core/error.hpp"
#include "train/trainer.hpp"

namespace llamaft {

int run_train(const Config& cfg) {
  apply_runtime_settings(cfg);
  LLAMAFT_REQUIRE(mpi_active(), "internal: train needs MPI");
  Trainer trainer(cfg, [&] { return make_backend(cfg); });
  return trainer.train();
}

}  // namespace llamaft
