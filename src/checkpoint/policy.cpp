#include "checkpoint/policy.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <memory>

#include "checkpoint/preemption.hpp"
#include "core/error.hpp"

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
  s.walltime_margin_s = cfg.get_float("checkpoint.walltime_margin_s");
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

int64_t slurm_job_end_time(std::string* source) {
  if (const char* e = std::getenv("SLURM_JOB_END_TIME"); e && *e) {
    char* end = nullptr;
    const long long t = std::strtoll(e, &end, 10);
    if (end && *end == '\0' && t > 0) {
      if (source) *source = "SLURM_JOB_END_TIME";
      return t;
    }
  }
  const char* job = std::getenv("SLURM_JOB_ID");
  if (!job || !*job) return 0;
  for (const char* c = job; *c; ++c)
    if (*c < '0' || *c > '9') return 0;
  const std::string cmd = str_cat("scontrol show job -o ", job, " 2>/dev/null");
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) return 0;
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, pipe.get())) > 0;) out.append(buf, n);
  const auto at = out.find("EndTime=");
  if (at == std::string::npos) return 0;
  std::tm tm{};
  if (!strptime(out.c_str() + at + 8, "%Y-%m-%dT%H:%M:%S", &tm)) return 0;  // "Unknown", "None": no limit
  tm.tm_isdst = -1;
  const std::time_t t = std::mktime(&tm);
  if (t <= 0) return 0;
  if (source) *source = "scontrol show job's EndTime";
  return static_cast<int64_t>(t);
}

BoundaryDecision CheckpointPolicy::at_step_boundary(int64_t step, Communicator& world) {
  struct Seen {  // reduced with MAX over every rank
    int64_t signal, minutes_due, walltime_due;
  } seen{preemption_signal(), 0, 0};
  const auto now = std::chrono::steady_clock::now();
  const double minutes = std::chrono::duration<double>(now - last_save_).count() / 60.0;
  step_s_ = std::max(step_s_, std::chrono::duration<double>(now - last_boundary_).count());
  last_boundary_ = now;
  if (world.rank() == 0 && settings_.every_minutes > 0 && minutes >= settings_.every_minutes) seen.minutes_due = 1;
  double time_left = 0, needed = 0;
  if (world.rank() == 0 && settings_.walltime_margin_s > 0 && step < total_steps_) {
    if (!end_known_) {
      std::string source;
      end_time_ = slurm_job_end_time(&source);
      end_known_ = true;
      if (end_time_ > 0)
        std::cerr << "llamaft train: the job ends in " << end_time_ - static_cast<int64_t>(std::time(nullptr))
                  << " s (" << source << "): training saves and exits 85 once that is less than a save, a step and "
                  << "checkpoint.walltime_margin_s = " << settings_.walltime_margin_s << " s\n";
    }
    if (end_time_ > 0) {
      time_left = static_cast<double>(end_time_ - static_cast<int64_t>(std::time(nullptr)));
      needed = save_s_ + step_s_ + settings_.walltime_margin_s;
      if (time_left < needed) seen.walltime_due = 1;
    }
  }
  static_assert(sizeof(Seen) == 3 * sizeof(int64_t), "Seen is reduced as three int64");
  world.all_reduce_max(&seen.signal, 3);
  BoundaryDecision d;
  d.signal = static_cast<int>(seen.signal);
  d.walltime = seen.walltime_due != 0 && d.signal == 0;
  d.time_left_s = time_left;
  d.needed_s = needed;
  d.stop_after = settings_.exit_after_steps > 0 && step >= settings_.exit_after_steps && step < total_steps_;
  d.save = d.signal != 0 || (settings_.every_steps > 0 && step % settings_.every_steps == 0) ||
           seen.minutes_due != 0 || d.stop_after || d.walltime;
  return d;
}

void CheckpointPolicy::saved(double seconds) {
  last_save_ = std::chrono::steady_clock::now();
  if (seconds >= 0) save_s_ = std::max(save_s_, seconds);
}

void CheckpointPolicy::arm_grace() const { arm_grace_timer(settings_.grace_seconds); }

}  // namespace llamaft
