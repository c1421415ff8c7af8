// When training saves and when it stops: checkpoint.every_steps and
// every_minutes, train.exit_after_steps, the end of training, and the
// preemption signals. Decisions are taken at step boundaries and agreed by
// every rank with one all-reduce (a signal or the minute timer may be seen
// by one rank first), so all ranks save, or stop, together.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "comm/communicator.hpp"
#include "config/config.hpp"

namespace llamaft {

struct CheckpointSettings {
  int64_t every_steps = 0;      // 0: off
  double every_minutes = 0;     // 0: off
  int64_t exit_after_steps = 0; // 0: off
  bool at_end = true;
  int grace_seconds = 0;        // after a signal; 0: no limit
  std::string signals = "SIGTERM,SIGUSR1,SIGUSR2";
  bool async = true;            // periodic saves write in the background
  bool warn_on_error = false;   // checkpoint.on_error = warn: a failed periodic save does not stop training
  double walltime_margin_s = 60;  // 0: no walltime saves

  // Whether periodic saves are configured (checkpoint.every_steps or every_minutes).
  bool periodic() const { return every_steps > 0 || every_minutes > 0; }
  // Whether periodic saves run in the background from a host copy kept
  // between saves (checkpoint.async): `train` stages it, `plan` counts it.
  bool stages_async() const { return async && periodic(); }

  // The checkpoint keys (and train.exit_after_steps), as the schema typed them.
  static CheckpointSettings read(const Config& cfg);
  // read(), then the checks `train` makes before any device is touched
  // (checkpoint.signals names signals it can catch).
  static CheckpointSettings from_config(const Config& cfg);
};

struct BoundaryDecision {
  bool save = false;       // save a checkpoint now
  int signal = 0;          // a preemption signal arrived: save, then exit 85
  bool stop_after = false; // train.exit_after_steps reached: save, then exit 0
  bool walltime = false;   // the job's time limit is near: save, then exit 85
  double time_left_s = 0;  // with walltime: seconds to the job's end, and what they had to cover
  double needed_s = 0;
};

// The Unix time a Slurm job ends: SLURM_JOB_END_TIME when Slurm sets it,
// else `scontrol show job -o $SLURM_JOB_ID`'s EndTime (local time); 0 when
// there is no job or no limit. `*source` says which.
int64_t slurm_job_end_time(std::string* source);

class CheckpointPolicy {
 public:
  CheckpointPolicy(CheckpointSettings s, int64_t total_steps);
  // train.epochs: the length is known once the data is (before the first step).
  void set_total_steps(int64_t total_steps) { total_steps_ = total_steps; }
  // Installs the signal handlers (before the model loads, so a signal during
  // start-up is kept and honoured at the first step boundary).
  void install_signals() const;
  // Collective over `world`: what to do after `step` steps completed.
  BoundaryDecision at_step_boundary(int64_t step, Communicator& world);
  // Called after every save (restarts the minute timer; `seconds`, when
  // known, is what the next walltime decision counts for a save); a signal
  // arms the grace timer before its save.
  void saved(double seconds = -1);
  // Before any save: what a save is expected to take (the load's time).
  void set_save_estimate(double seconds) { save_s_ = seconds; }
  void restart_timer() { last_save_ = last_boundary_ = std::chrono::steady_clock::now(); }
  void arm_grace() const;
  const CheckpointSettings& settings() const { return settings_; }

 private:
  CheckpointSettings settings_;
  int64_t total_steps_;
  std::chrono::steady_clock::time_point last_save_ = std::chrono::steady_clock::now();
  // Walltime: the job's end (Unix seconds, looked up once by rank 0), a
  // save's measured time and the longest interval between step boundaries.
  bool end_known_ = false;
  int64_t end_time_ = 0;
  double save_s_ = 0, step_s_ = 0;
  std::chrono::steady_clock::time_point last_boundary_ = std::chrono::steady_clock::now();
};

}  // namespace llamaft
