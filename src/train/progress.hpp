// Training progress where people look. On a terminal: one line rewritten in
// place a few times a second. Otherwise (a Slurm job's .out, a file, a pipe;
// ranks under mpirun or srun never have a terminal): one whole line at the
// first step, then every `every_steps` steps or `every_s` seconds, whichever
// comes first, and at the last step, so `tail -f llamaft-123.out` shows
//   llamaft train: step 20/400 (5.0%) loss 6.2143 lr 1.00e-03 12.3k tok/s
//       MFU 41.2% elapsed 0:01:05 ETA 0:20:35 peak mem 512 MiB (rss 903 MiB)
// (one line). ETA is the remaining steps at this run's rate since its first
// step (the first step carries one-off costs); elapsed counts from train().
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace llamaft {

struct ProgressPoint {
  int64_t step = 0;           // global step just completed
  double loss = 0, lr = 0, tokens_per_s = 0;
  double mfu = -1;            // fraction; < 0: unknown
  int64_t peak_bytes = 0;     // the backend's high-water mark (device memory on a GPU)
  int64_t rss_peak_bytes = 0; // this process's VmHWM; 0: unknown
};

// "1:02:03" (or "2:03" under an hour; "3d 4:05:06" past a day).
std::string format_duration(double seconds);

class Progress {
 public:
  // enabled: output.progress on rank 0. first_step: the step this run starts
  // at (after a resume), total: train.steps.
  Progress(bool enabled, int64_t first_step, int64_t total, int64_t every_steps, double every_s = 60);
  // Forces the mode (tests; the constructor asks isatty(stderr)).
  void set_terminal(bool terminal) { terminal_ = terminal; }
  // Prints (or not) for a completed step; returns true when a line was printed.
  bool update(const ProgressPoint& p);
  // Ends the terminal line.
  void finish();
  // The line's text, without prefix or newline.
  std::string format(const ProgressPoint& p, double elapsed_s) const;
  double elapsed_s() const;

 private:
  using Clock = std::chrono::steady_clock;
  double eta_s(int64_t step) const;
  bool enabled_, terminal_;
  int64_t first_step_, total_, every_steps_;
  double every_s_;
  int64_t last_printed_step_ = -1;
  Clock::time_point start_ = Clock::now(), last_print_{}, first_step_done_{};
  bool open_line_ = false;
};

}  // namespace llamaft
