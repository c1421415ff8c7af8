// The process's own memory and age, from /proc: what Slurm's jobacct_gather
// and a cgroup see. RSS is split as the kernel splits it (RssAnon: heap and
// anonymous mappings; RssFile: mapped files; RssShmem: shared memory such as
// Open MPI's vader segments); VmHWM is the kernel's exact peak of their sum.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

namespace llamaft {

struct ProcMemory {
  int64_t hwm = 0, rss = 0, anon = 0, file = 0, shmem = 0;  // bytes; 0 where /proc does not say
};

ProcMemory read_proc_memory();
// Resets VmHWM to the current RSS (`echo 5 > /proc/self/clear_refs`, Linux
// >= 4.0); false where the kernel refuses, in which case peaks accumulate.
bool reset_peak_rss();
// Seconds since this process started (/proc/self/stat's starttime; 10 ms
// resolution), or -1 where unavailable.
double process_age_seconds();

// Per-phase peaks: VmHWM exactly (reset at each phase change), and the
// largest RssAnon and RssFile seen by a 50 Hz sampler thread (which reads
// /proc only; it makes no MPI call).
class MemoryPhases {
 public:
  struct Peak {
    int64_t hwm = 0, anon = 0, file = 0, shmem = 0;
  };
  MemoryPhases();
  ~MemoryPhases();
  MemoryPhases(const MemoryPhases&) = delete;
  MemoryPhases& operator=(const MemoryPhases&) = delete;
  // Ends the current phase, returning its peaks, and starts `next`.
  Peak switch_to(const std::string& next);
  const std::string& current() const { return current_; }

 private:
  void sample();
  std::string current_;
  std::atomic<int64_t> anon_{0}, file_{0}, shmem_{0};
  std::atomic<bool> stop_{false};
  std::thread sampler_;
};

}  // namespace llamaft
