// Training, as torchtitan's Trainer lays it out: the constructor builds the
// run (settings, backend, model, FSDP, data, checkpoint resume, outputs),
// step() runs one optimizer step and returns its metrics, evaluate() and
// sample() run the validation loss and the greedy samples, and train() is
// the loop and the export. When to save lives in checkpoint/checkpointer.hpp
// (one call per step boundary), what the run reports in train/run_report.hpp.
// Every rank runs the same code (SPMD); rank 0 alone prints and writes.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "checkpoint/checkpointer.hpp"
#include "checkpoint/run_lock.hpp"
#include "comm/communicator.hpp"
#include "config/config.hpp"
#include "data/token_dataset.hpp"
#include "model/device_batch.hpp"
#include "model/llama.hpp"
#include "parallel/fsdp.hpp"
#include "train/data_order.hpp"
#include "train/evaluate.hpp"
#include "train/metrics.hpp"
#include "train/run_report.hpp"
#include "train/sample_prompts.hpp"
#include "train/settings.hpp"
#include "train/task_eval.hpp"

namespace llamaft {

// Makes the compute backend once the settings are validated (the command
// passes the runtime's choice; tests can pass a CPU backend).
using BackendFactory = std::function<std::unique_ptr<Backend>()>;

class Trainer {
 public:
  // Collective over MPI's world. Validates everything before a device is
  // touched; resumes from a checkpoint as checkpoint.resume says.
  Trainer(const Config& cfg, const BackendFactory& make_backend);
  ~Trainer();
  // The checks of the configuration that every rank makes alike (settings,
  // checkpoint policy, the model's config.json), without touching a device or
  // another rank: `llamaft train` runs them before the first collective so
  // that all ranks agree on one error and one rank prints it.
  static void validate(const Config& cfg, int world_size);

  // One optimizer step at the current step; collective.
  StepMetrics step();
  // Validation loss over data.val_path (train.eval_rows rows); collective.
  SplitLoss evaluate();
  // train.eval_task's scores (lm_eval); collective.
  TaskResult evaluate_task();
  // Greedy continuations of train.sample_prompts; collective.
  std::vector<std::vector<int32_t>> sample();
  // The loop, checkpoints and export; returns the process exit code.
  int train();

  const TrainState& state() const { return state_; }
  Fsdp& fsdp() { return *fsdp_; }
  const TrainSettings& settings() const { return settings_; }

 private:
  // Rank 0 locks output.dir and checkpoint.dir (RunLock); every rank learns
  // the verdict, so a folder in use or unusable ends the job at start-up.
  void lock_folders();
  void load_data();
  void build_model(const BackendFactory& make_backend);
  void resume();
  void export_result();

  std::unique_ptr<Communicator> world_;  // MPI's world: the host-side coordination
  bool lead_ = false;
  TrainSettings settings_;
  LlamaConfig model_config_;
  TokenDataset train_data_, val_data_;
  SamplePrompts sample_prompts_;  // train.sample_prompts, as ids (and their text)
  std::unique_ptr<Backend> backend_;
  ModelOptions model_options_;
  uint64_t dropout_seed_ = 0;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Communicator> device_comm_;  // NCCL between GPUs; null: the MPI world
  std::unique_ptr<Fsdp> fsdp_;
  std::unique_ptr<DataOrder> order_;
  // When to save, and the saves (declared after fsdp_: a writer in flight is
  // joined before the shards it reads are freed).
  std::unique_ptr<Checkpointer> checkpoints_;
  std::vector<std::unique_ptr<RunLock>> locks_;  // rank 0: output.dir and checkpoint.dir, held for the job
  RunIdentity identity_;
  TrainState state_;
  std::unique_ptr<DeviceBatch> device_batch_;
  std::unique_ptr<TaskEvaluator> task_eval_;  // train.eval_task, tokenized once
  std::unique_ptr<RunReport> report_;         // run_info, metrics, progress, memory phases, summary
};

}  // namespace llamaft
