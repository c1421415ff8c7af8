#include "checkpoint/policy.hpp"

#include "checkpoint/preemption.hpp"

namespace llamaft {

CheckpointSettings CheckpointSettings::read(const Config& cfg) {
  CheckpointSettings s;
  s.every_steps = cfg.get_int("checkpoint.every_steps");
  s.every_minutes = cfg.get_float("checkpoint.every_minutes");
  s.exit_after_steps = cfg.get_int("train.exit_after_steps");
  s.at_end = cfg.get_bool("checkpoint.at_end");
  s.grace_seconds = static_cast<int>(cfg.get_int("checkpoint.grace_seconds"));
  s.signals = cfg.get_string("checkpoint.signals");
  s.async = cfg.get_bool("checkpoint.async");
  s.warn_on_error = cfg.get_string("checkpoint.on_error") == "warn";
  return s;
}

CheckpointSettings CheckpointSettings::from_config(const Config& cfg) {
  CheckpointSettings s = read(cfg);
  parse_signal_list(s.signals);  // validate before any device is touched
  return s;
}

CheckpointPolicy::CheckpointPolicy(CheckpointSettings s, int64_t total_steps)
    : settings_(std::move(s)), total_steps_(total_steps) {}

void CheckpointPolicy::install_signals() const { install_preemption_handlers(parse_signal_list(settings_.signals)); }

BoundaryDecision CheckpointPolicy::at_step_boundary(int64_t step, Communicator& world) {
  struct Seen {  // reduced with MAX over every rank
    int64_t signal, minutes_due;
  } seen{preemption_signal(), 0};
  const double minutes =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - last_save_).count() / 60.0;
  if (world.rank() == 0 && settings_.every_minutes > 0 && minutes >= settings_.every_minutes) seen.minutes_due = 1;
  static_assert(sizeof(Seen) == 2 * sizeof(int64_t), "Seen is reduced as two int64");
  world.all_reduce_max(&seen.signal, 2);
  BoundaryDecision d;
  d.signal = static_cast<int>(seen.signal);
  d.stop_after = settings_.exit_after_steps > 0 && step >= settings_.exit_after_steps && step < total_steps_;
  d.save = d.signal != 0 || (settings_.every_steps > 0 && step % settings_.every_steps == 0) ||
           seen.minutes_due != 0 || d.stop_after;
  return d;
}

void CheckpointPolicy::saved() {
  last_save_ = std::chrono::steady_clock::now();
}

void CheckpointPolicy::arm_grace() const { arm_grace_timer(settings_.grace_seconds); }

}  // namespace llamaft
