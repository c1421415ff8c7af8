// Training, as torchtitan's Trainer lays it out: the constructor builds the
// run (settings, backend, model, FSDP, data, checkpoint resume, outputs),
// step() runs one optimizer step and returns its metrics, evaluate() and
// sample() run the validation loss and the greedy samples, and train() is
// the loop with its checkpoint policy and the export. Every rank runs the
// same code (SPMD); rank 0 alone prints and writes.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "checkpoint/checkpoint.hpp"
#include "checkpoint/run_lock.hpp"
#include "checkpoint/policy.hpp"
#include "comm/communicator.hpp"
#include "comm/mpi_comm.hpp"
#include "config/config.hpp"
#include "core/proc_stats.hpp"
#include "data/token_dataset.hpp"
#include "model/device_batch.hpp"
#include "model/llama.hpp"
#include "parallel/fsdp.hpp"
#include "parallel/fsdp_io.hpp"
#include "train/data_order.hpp"
#include "train/evaluate.hpp"
#include "train/memory_plan.hpp"
#include "train/metrics.hpp"
#include "train/progress.hpp"
#include "train/sample_prompts.hpp"
#include "train/settings.hpp"
#include "train/task_eval.hpp"
#include "train/tracker.hpp"

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
  // Rank 0, after a signal's committed checkpoint: the exit code in
  // $LLAMAFT_EXIT_STATUS_FILE for job scripts, since mpirun itself exits 1
  // when it was sent SIGTERM or SIGINT whatever the ranks did.
  void record_exit_status(int code) const;
  void load_data();
  void build_model(const BackendFactory& make_backend);
  void resume();
  void write_run_info(const Config& cfg);
  // A synchronous save (after waiting for one in flight), reported.
  void save_checkpoint();
  // A periodic save: in the background with checkpoint.async, else
  // synchronous; with checkpoint.on_error = warn a failure is reported and
  // training goes on.
  void periodic_checkpoint();
  // Commits a save in flight once every rank's writer is done (collective,
  // at each step boundary); waits for it when `wait`.
  void settle_checkpoint(bool wait);
  void report_save();
  // Runs a periodic save's part; true unless it failed under on_error = warn.
  template <typename F>
  bool tolerate_save_failure(F&& f);
  void export_result();
  void write_summary(double train_s);
  // Progress reporting (trainer_progress.cpp): the peak MFU divides by, the
  // banner's parameter counts, the progress line and metrics.jsonl's time,
  // elapsed_s, epoch and mfu.
  struct ParamCounts {
    int64_t total = 0, trainable = 0, adapter = 0;
  };
  void measure_peak();
  ParamCounts param_counts() const;
  double mfu(const StepMetrics& m) const;  // < 0: unknown
  nlohmann::ordered_json progress_fields(const StepMetrics& m) const;
  void report_progress(const StepMetrics& m);
  void end_memory_phase(const std::string& next);

  // Launch to the first step, by phase (seconds; printed and in run_info.json).
  struct Startup {
    double launch = 0;     // process start to the Trainer (MPI_Init, the runtime's checks)
    double config = 0;     // settings, config.json, the datasets
    double allocate = 0;   // backend, model, FSDP shards
    LoadStats load;        // reading the base (and quantizing it)
    double resume = 0;     // the checkpoint, when resuming
    double outputs = 0;    // run_info, trackers, the plan
    double total() const { return launch + config + allocate + load.read_s + load.other_s + resume + outputs; }
  };

  std::unique_ptr<MpiCommunicator> world_;
  bool lead_ = false;
  TrainSettings settings_;
  CheckpointPolicy policy_;
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
  std::unique_ptr<CheckpointManager> checkpoints_;
  std::vector<std::unique_ptr<RunLock>> locks_;  // rank 0: output.dir and checkpoint.dir, held for the job
  RunIdentity identity_;
  TrainState state_;
  int64_t restarts_ = 0;
  Startup startup_;
  MemoryPlan plan_;
  std::unique_ptr<MemoryPhases> memory_;  // per-phase peak RSS of this rank
  std::map<std::string, MemoryPhases::Peak> memory_peaks_;
  double first_step_s_ = -1;
  int saves_ = 0;                             // committed checkpoints of this run
  double save_s_ = 0, save_stall_s_ = 0;      // their times, and the time training stopped for them
  std::unique_ptr<MetricsWriter> metrics_;
  std::unique_ptr<Progress> progress_;
  double flops_per_token_ = 0;  // model FLOPs per trained token (train/mfu.hpp)
  double peak_flops_ = 0;       // every rank's peak, summed; 0: unknown
  std::string peak_source_;     // where peak_flops_ came from
  std::unique_ptr<DeviceBatch> device_batch_;
  std::unique_ptr<TaskEvaluator> task_eval_;  // train.eval_task, tokenized once
  std::unique_ptr<TrackerFollower> tracker_;  // output.tracker: W&B or MLflow beside the run (never fatal)
};

}  // namespace llamaft
