#include "comm/watchdog.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "core/error.hpp"

namespace llamaft {

namespace {

using Clock = std::chrono::steady_clock;

struct Watchdog {
  std::mutex mu;
  std::condition_variable cv;
  std::thread thread;
  bool stop = false;
  double timeout_s = 0, stagger_s = 0;
  // Written by the main thread, read by the watchdog (under mu: a scope is
  // entered at most a few thousand times per step, an uncontended lock).
  const char* what = nullptr;
  const std::string* members = nullptr;
  Clock::time_point since{};
  uint64_t generation = 0;
};

Watchdog& dog() {
  static Watchdog* w = new Watchdog;  // never destroyed: the thread may outlive static destructors
  return *w;
}

// True for the first rank of this job on this host to time out: a file in
// /dev/shm named after the job. The others exit quietly, so that a host
// that lost its link prints one line, not one per rank (the launcher,
// which would kill them, may be on the other side of the cut).
bool first_on_this_host() {
  std::string job;
  for (const char* var : {"PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "SLURM_JOB_ID"})
    if (const char* v = std::getenv(var)) {
      job = v;
      break;
    }
  if (job.empty()) return true;
  for (char& c : job)
    if (c == '/') c = '_';
  // With the launcher's pid on this host (mpirun, orted or slurmstepd): a
  // requeued Slurm job reuses its step's name.
  const std::string path = "/dev/shm/llamaft-watchdog-" + job + "-" + std::to_string(getppid());
  const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
  if (fd >= 0) ::close(fd);
  return fd >= 0 || errno != EEXIST;
}

[[noreturn]] void report_and_exit(const char* what, const std::string& members, double waited) {
  if (!first_on_this_host()) _exit(kExitCommFailure);
  const std::string msg = str_cat(
      where_prefix(), "llamaft: error: ", what, " over ", members, " made no progress for ",
      static_cast<int>(waited + 0.5), " s (runtime.comm_timeout_s = ", dog().timeout_s, "); a rank in it is stopped, dead or unreachable, "
      "or its host's link is down. Ending the job (exit ", kExitCommFailure,
      "); the last committed checkpoint is intact.\n");
  (void)!write(STDERR_FILENO, msg.data(), msg.size());
  _exit(kExitCommFailure);
}

void run() {
  Watchdog& w = dog();
  constexpr auto kTick = std::chrono::milliseconds(100);
  auto last_tick = Clock::now();
  uint64_t seen_generation = 0;
  Clock::time_point started{};
  std::unique_lock<std::mutex> lock(w.mu);
  while (!w.stop) {
    w.cv.wait_for(lock, kTick);
    const auto now = Clock::now();
    // This process was not running for a while (stopped, or the machine
    // froze): whatever it waits for is not the others' fault. Restart the clock.
    const bool we_stalled = now - last_tick > std::chrono::seconds(2);
    last_tick = now;
    if (w.what == nullptr) continue;
    if (w.generation != seen_generation || we_stalled) {
      seen_generation = w.generation;
      started = we_stalled ? now : w.since;
    }
    const double waited = std::chrono::duration<double>(now - started).count();
    if (waited > w.timeout_s + w.stagger_s) report_and_exit(w.what, *w.members, waited);
  }
}

}  // namespace

void start_collective_watchdog(double timeout_s, int world_rank) {
  Watchdog& w = dog();
  if (timeout_s <= 0 || w.thread.joinable()) return;
  w.timeout_s = timeout_s;
  w.stagger_s = 3.0 * std::min(std::max(world_rank, 0), 3);
  w.stop = false;
  w.thread = std::thread(run);
}

void stop_collective_watchdog() {
  Watchdog& w = dog();
  if (!w.thread.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(w.mu);
    w.stop = true;
  }
  w.cv.notify_all();
  w.thread.join();
}

WatchdogScope::WatchdogScope(const char* what, const std::string* members) {
  Watchdog& w = dog();
  std::lock_guard<std::mutex> lock(w.mu);
  w.what = what;
  w.members = members;
  w.since = Clock::now();
  ++w.generation;
}

WatchdogScope::~WatchdogScope() {
  Watchdog& w = dog();
  std::lock_guard<std::mutex> lock(w.mu);
  w.what = nullptr;
}

}  // namespace llamaft
