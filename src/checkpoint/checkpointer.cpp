// When training saves (checkpointer.hpp): the step boundary's decision, the
// save in flight, and what a committed save reports.
#include "checkpoint/checkpointer.hpp"

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>

#include "core/error.hpp"
#include "core/util.hpp"

namespace llamaft {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Rank 0, after a signal's committed checkpoint: the exit code in
// $LLAMAFT_EXIT_STATUS_FILE for job scripts, since mpirun itself exits 1
// when it was sent SIGTERM or SIGINT whatever the ranks did, and MPICH 4.0's
// Hydra mpiexec sometimes exits 0 after forwarding a signal.
void record_exit_status(int code) {
  const char* path = std::getenv("LLAMAFT_EXIT_STATUS_FILE");
  if (!path || !*path) return;
  try {
    write_file_durably(path, std::to_string(code) + "\n");
  } catch (const std::exception& e) {
    std::cerr << "llamaft train: warning: cannot write LLAMAFT_EXIT_STATUS_FILE: " << e.what() << "\n";
  }
}

}  // namespace

Checkpointer::Checkpointer(CheckpointSettings settings, int64_t total_steps, Communicator& world,
                           const std::string& dir, int keep_last)
    : policy_(std::move(settings), total_steps),
      world_(world),
      manager_(world, dir, keep_last),
      lead_(world.rank() == 0) {}

std::optional<int> Checkpointer::at_step_boundary(const TrainState& state, const SaveSource& src) {
  const BoundaryDecision d = policy_.at_step_boundary(state.step, world_);
  settle(false);
  if (!d.save) return std::nullopt;
  if (d.signal) policy_.arm_grace();
  if (!d.signal && !d.stop_after && !d.walltime) {
    save_periodic(state, src);
    return std::nullopt;
  }
  return stop(d, state, src);
}

void Checkpointer::at_end(const TrainState& state, const SaveSource& src) {
  settle(true);
  if (policy_.settings().at_end && state.step > 0 && (saves_ == 0 || manager_.last_save().step != state.step))
    save_now(state, src);
}

int Checkpointer::stop(const BoundaryDecision& d, const TrainState& state, const SaveSource& src) {
  // Wait for a save in flight, then save this step synchronously unless that one was it.
  const auto t_wait = Clock::now();
  const bool was_in_flight = manager_.in_flight();
  settle(true);
  const double waited = seconds_since(t_wait);
  if (manager_.last_save().step != state.step || saves_ == 0) save_now(state, src);
  if (lead_ && was_in_flight)
    std::cerr << "llamaft train: waited " << waited << " s for the save in flight, then saved step " << state.step
              << " in " << manager_.last_save().seconds << " s\n";
  // SIGINT alone (max-reduced: any other signal on any rank wins) is a person's Ctrl-C.
  const int code = d.walltime ? kExitRequeue : !d.signal ? kExitOk : d.signal == SIGINT ? kExitInterrupted : kExitRequeue;
  if (lead_ && d.walltime)
    std::cerr << "llamaft train: the job's time limit is " << d.time_left_s << " s away, less than a save, a step and "
              << "the margin (" << d.needed_s << " s); checkpointed at step " << state.step << ", exiting " << code
              << " (requeue me)\n";
  if (lead_ && d.signal == SIGINT)
    std::cerr << "llamaft train: interrupted; checkpointed at step " << state.step << ", exiting " << code << "\n";
  else if (lead_ && d.signal)
    std::cerr << "llamaft train: signal " << d.signal << " received; checkpointed at step " << state.step
              << ", exiting " << code << " (requeue me)\n";
  if (lead_ && !d.signal && !d.walltime)
    std::cerr << "llamaft train: train.exit_after_steps reached at step " << state.step << "\n";
  if (lead_ && (d.signal || d.walltime)) record_exit_status(code);
  return code;
}

void Checkpointer::report_save() {
  const SaveReport& r = manager_.last_save();
  ++saves_;
  save_s_ += r.seconds;
  stall_s_ += r.stall_s;
  if (!lead_) return;
  std::cerr << "llamaft train: checkpoint " << r.path << " (" << r.bytes / 1e6 << " MB in " << r.seconds << " s";
  if (r.async) std::cerr << ", written in the background; training stopped " << r.stall_s << " s for it";
  std::cerr << ")\n";
}

template <typename F>
bool Checkpointer::tolerate_save_failure(F&& f) {
  try {
    f();
    return true;
  } catch (const CheckpointError& e) {
    if (!policy_.settings().warn_on_error) throw;
    if (!e.is_reported_elsewhere())
      std::cerr << where_prefix() << "llamaft train: warning: " << e.what()
                << " (checkpoint.on_error = warn: training goes on)\n";
    return false;
  }
}

void Checkpointer::settle(bool wait) {
  if (!manager_.in_flight()) return;
  bool committed = false;
  // Only asynchronous periodic saves are ever in flight.
  tolerate_save_failure([&] {
    if (wait) {
      manager_.finish_in_flight();
      committed = true;
    } else {
      committed = manager_.poll();
    }
  });
  if (committed) report_save();
}

void Checkpointer::save_now(const TrainState& state, const SaveSource& src) {
  settle(true);
  phase("checkpoint");
  manager_.save(src.fsdp, src.backend, state, src.identity);
  phase("train");
  policy_.saved(manager_.last_save().seconds);
  report_save();
}

void Checkpointer::save_periodic(const TrainState& state, const SaveSource& src) {
  if (!policy_.settings().async) {
    settle(true);
    phase("checkpoint");
    const bool ok = tolerate_save_failure([&] { manager_.save(src.fsdp, src.backend, state, src.identity); });
    phase("train");
    policy_.saved(ok ? manager_.last_save().seconds : -1);
    if (ok) report_save();
    return;
  }
  settle(true);  // at most one in flight
  tolerate_save_failure([&] { manager_.begin_async_save(src.fsdp, src.backend, state, src.identity); });
  policy_.saved();
}

}  // namespace llamaft
