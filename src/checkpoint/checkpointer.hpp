// When training saves, in one place: the policy (checkpoint.every_steps,
// every_minutes, train.exit_after_steps, the end of training), the
// preemption signals, the job's time limit and the save in flight. The Trainer calls
// at_step_boundary() once per step and at_end() once after the loop;
// everything a save decides, waits for, commits and reports happens behind
// those two calls.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "backend/backend.hpp"
#include "checkpoint/checkpoint.hpp"
#include "checkpoint/policy.hpp"
#include "comm/communicator.hpp"
#include "parallel/fsdp.hpp"

namespace llamaft {

// What a save writes: the shards, the backend they live on, and the run.
struct SaveSource {
  Fsdp& fsdp;
  Backend& backend;
  const RunIdentity& identity;
};

class Checkpointer {
 public:
  // Collective over `world` (the CheckpointManager's communicator).
  Checkpointer(CheckpointSettings settings, int64_t total_steps, Communicator& world, const std::string& dir,
               int keep_last);

  // Installs the preemption signal handlers (before the model loads, so a
  // signal during start-up is honoured at the first step boundary).
  void install_signals() const { policy_.install_signals(); }
  // Whether asynchronous periodic saves will stage host copies.
  bool stages_async() const { return policy_.settings().stages_async(); }
  // Called with "checkpoint" before a synchronous save and "train" after it
  // (the run's memory phases).
  void on_phase(std::function<void(const std::string&)> f) { phase_ = std::move(f); }
  // train.epochs: the length is known once the data is (before the first step).
  void set_total_steps(int64_t total_steps) { policy_.set_total_steps(total_steps); }
  // The loop starts: the minute timer starts now, and until a save is
  // measured a walltime decision counts `save_estimate_s` for one.
  void start(double save_estimate_s) {
    policy_.restart_timer();
    policy_.set_save_estimate(save_estimate_s);
  }

  // Collective, once per step boundary, after `state.step` steps: commits a
  // save in flight once it is done, and saves as the policy, a signal or
  // train.exit_after_steps ask. Returns the exit code when training must
  // stop now (its checkpoint committed), nothing to go on.
  std::optional<int> at_step_boundary(const TrainState& state, const SaveSource& src);
  // Collective, after the last step: waits for a save in flight, then saves
  // the final step (checkpoint.at_end) unless that one was it.
  void at_end(const TrainState& state, const SaveSource& src);
  // Before the optimizer changes the shards: a save in flight may still be copying them. No MPI.
  void before_update() { manager_.before_update(); }

  CheckpointManager& manager() { return manager_; }
  // Committed saves of this run, their time, and the time training stopped for them.
  int saves() const { return saves_; }
  double save_seconds() const { return save_s_; }
  double stall_seconds() const { return stall_s_; }

 private:
  // A synchronous save (after waiting for one in flight), reported.
  void save_now(const TrainState& state, const SaveSource& src);
  // A periodic save: in the background with checkpoint.async, else
  // synchronous; with checkpoint.on_error = warn a failure is reported and
  // training goes on.
  void save_periodic(const TrainState& state, const SaveSource& src);
  // Commits a save in flight once every rank's writer is done (collective);
  // waits for it when `wait`.
  void settle(bool wait);
  // A signal, the job's time limit or train.exit_after_steps: the save, the messages, the exit code.
  int stop(const BoundaryDecision& d, const TrainState& state, const SaveSource& src);
  void report_save();
  // Runs a periodic save's part; true unless it failed under on_error = warn.
  template <typename F>
  bool tolerate_save_failure(F&& f);
  void phase(const std::string& name) {
    if (phase_) phase_(name);
  }

  CheckpointPolicy policy_;
  Communicator& world_;
  CheckpointManager manager_;
  bool lead_;
  std::function<void(const std::string&)> phase_;
  int saves_ = 0;
  double save_s_ = 0, stall_s_ = 0;
};

}  // namespace llamaft
