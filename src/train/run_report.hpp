// What a training run tells people and tools, beside the loop it reports on
// (train/trainer.hpp): start-up by phase, run_info.json and the banner, each
// logged step's metrics.jsonl line and progress line (MFU over a GEMM peak
// measured at start-up; train/mfu.hpp has the FLOPs convention), the
// validation, task and sample lines, the trackers, every rank's peak memory
// per phase and summary.json. Rank 0 alone prints and writes; every rank
// joins the collectives (host names, the slowest phase, the memory peaks).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "checkpoint/checkpointer.hpp"
#include "comm/communicator.hpp"
#include "config/config.hpp"
#include "core/proc_stats.hpp"
#include "data/token_dataset.hpp"
#include "model/llama.hpp"
#include "parallel/fsdp.hpp"
#include "parallel/fsdp_io.hpp"
#include "train/evaluate.hpp"
#include "train/memory_plan.hpp"
#include "train/metrics.hpp"
#include "train/progress.hpp"
#include "train/sample_prompts.hpp"
#include "train/settings.hpp"
#include "train/step_profile.hpp"
#include "train/task_eval.hpp"
#include "train/tracker.hpp"

namespace llamaft {

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

// The parts of a built run that its reports read (the Trainer owns them).
struct RunView {
  const TrainSettings& settings;
  const LlamaConfig& model_config;
  const ModelOptions& model_options;
  Communicator& world;
  Backend& backend;
  Fsdp& fsdp;
  LlamaModel& model;
  const TokenDataset& train_data;
  const Checkpointer& checkpoints;
};

class RunReport {
 public:
  // The memory phase "startup" begins.
  explicit RunReport(bool lead);
  Startup& startup() { return startup_; }
  // Before any model memory (the GEMM scratch must not sit beside it): the
  // peak MFU divides by, output.peak_tflops or measured on every rank at once.
  void measure_peak(const TrainSettings& s, Backend& be, Communicator& world, bool bf16);
  // Collective, once the run is built: every phase's slowest rank, then
  // config.cfg, run_info.json, the banner, the trackers and the progress line.
  void open(const Config& cfg, const RunView& run, int64_t restarts, int64_t first_step);
  // Rank 0: the start-up line.
  void print_startup() const;
  // Ends the current memory phase (keeping its peaks) and begins `next`.
  void memory_phase(const std::string& next);

  // After each step: the metrics.jsonl line (every train.log_every) and the progress line.
  void step(const StepMetrics& m, int64_t consumed_rows);
  void validation(int64_t step, const SplitLoss& v);
  void task(int64_t step, const TaskResult& t);
  void samples(int64_t step, const SamplePrompts& prompts, const std::vector<std::vector<int32_t>>& samples);
  // The loop ended: the progress line is closed.
  void finish_progress() { progress_->finish(); }
  // Collective: summary.json, with every rank's peak memory per phase; with
  // train.profile, profile.json and the table.
  void summary(double train_s);
  void finish_trackers() { tracker_->finish(); }

 private:
  struct ParamCounts {
    int64_t total = 0, trainable = 0, adapter = 0;
  };
  ParamCounts param_counts() const;
  double mfu(const StepMetrics& m) const;  // < 0: unknown
  void agree_startup();
  void write_run_info(const Config& cfg);
  void print_banner() const;

  bool lead_;
  std::unique_ptr<RunView> run_;  // from open()
  int64_t restarts_ = 0;
  Startup startup_;
  MemoryPlan plan_;
  std::unique_ptr<MemoryPhases> memory_;  // per-phase peak RSS of this rank
  std::map<std::string, MemoryPhases::Peak> memory_peaks_;
  double first_step_s_ = -1;
  std::unique_ptr<MetricsWriter> metrics_;
  std::unique_ptr<Progress> progress_;
  std::unique_ptr<TrackerFollower> tracker_;  // output.tracker: W&B or MLflow beside the run (never fatal)
  double flops_per_token_ = 0;  // model FLOPs per trained token (train/mfu.hpp)
  double peak_flops_ = 0;       // every rank's peak, summed; 0: unknown
  std::string peak_source_;     // where peak_flops_ came from
  StepProfile profile_;         // train.profile: the ops' time by family
};

}  // namespace llamaft
