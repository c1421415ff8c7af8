// Experiment tracking beside the native binary (output.tracker = wandb|mlflow).
// Rank 0 starts scripts/llamaft_track.py, which tails output.dir/metrics.jsonl
// and logs it with the official W&B or MLflow Python client; llamaft itself
// never imports Python and never waits on the follower in the step loop.
//
// The follower is started with posix_spawn (no fork of an MPI process), in a
// process group of its own, stdin /dev/null, stdout and stderr appended to
// output.dir/tracker/follower.log. Its warnings reach rank 0's stderr through
// fd 3, which it closes as soon as training ends, so mpirun never waits for it.
// Failure is never fatal: a missing interpreter or script is one warning here,
// a missing or failing client one warning from the follower.
#pragma once

#include <sys/types.h>

#include <string>

#include "config/config.hpp"

namespace llamaft {

// The keys the binary itself acts on (output.tracker, tracker.python, script,
// finish_timeout_s), parsed once: train's follower and `llamaft track` read
// them here. The follower script reads the rest of [tracker] from config.cfg.
struct TrackerSettings {
  std::string tracker = "none";  // output.tracker: none | wandb | mlflow
  std::string python;            // tracker.python: runs the follower
  std::string script;            // tracker.script ("": tracker_script_path looks for it)
  double finish_timeout_s = 0;

  static TrackerSettings from_config(const Config& cfg);
};

class TrackerFollower {
 public:
  // Starts the follower when `lead` and output.tracker != none; otherwise does
  // nothing. Call after config.cfg and run_info.json are written.
  TrackerFollower(const TrackerSettings& settings, const std::string& out_dir, bool lead);
  // An early exit (exit_after_steps, a signal, an error): the follower logs
  // what metrics.jsonl holds and closes the run without the artifact.
  ~TrackerFollower();
  TrackerFollower(const TrackerFollower&) = delete;
  TrackerFollower& operator=(const TrackerFollower&) = delete;

  // Training is complete (after the export): the follower logs the last lines
  // and, with tracker.log_artifact, the adapter or model folder, then exits.
  // Waits at most tracker.finish_timeout_s; past that it goes on alone.
  void finish() noexcept;

 private:
  void stop(const char* how) noexcept;

  pid_t pid_ = -1;
  std::string state_dir_;
  double timeout_s_ = 0;
};

// The follower script: tracker.script, else LLAMAFT_TRACK_SCRIPT from the
// environment, else scripts/llamaft_track.py of the source tree or next to the
// binary (../scripts, ../share/llamaft). "" when none exists.
std::string tracker_script_path(const TrackerSettings& settings);

}  // namespace llamaft
