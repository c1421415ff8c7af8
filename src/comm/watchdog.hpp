// The CPU backend's collective watchdog, the counterpart of the NCCL
// communicator's timeout. MPI collectives in Open MPI 4.1 cannot be cancelled,
// and with MPI_THREAD_FUNNELED only the main thread may call MPI, so the
// watchdog is a thread that never calls MPI: the main thread marks each
// blocking MPI call (a WatchdogScope), and when one has made no progress for
// runtime.comm_timeout_s the thread prints one message and _exit()s with
// kExitCommFailure (5). mpirun and srun -K1 end the rest of the job when a
// rank exits non-zero, so the job ends with 5.
//
// One message per job: ranks time out in rank order (rank r waits
// min(r, 3) x 3 s longer), so the lowest waiting rank reports and the job is
// gone before the next one's deadline. A rank that was itself stopped
// (SIGSTOP, a frozen VM) does not accuse the others when it wakes: a gap in
// the watchdog's own ticks restarts the clock. The ranks of one host that
// time out together print once (a /dev/shm file per job): when a link is
// cut, each side of it reports once. mpirun itself then waits for the
// daemon on the far side until the link returns; under Slurm the node is
// marked down after SlurmdTimeout and the job ends (NODE_FAIL, requeued).
#pragma once

#include <string>

namespace llamaft {

// Starts the watchdog thread (idempotent; timeout <= 0 disables it).
void start_collective_watchdog(double timeout_s, int world_rank);
void stop_collective_watchdog();

// Marks one blocking MPI call on the main thread. `what` and `members` must
// outlive the scope (string literals and the communicator's description).
class WatchdogScope {
 public:
  WatchdogScope(const char* what, const std::string* members);
  ~WatchdogScope();
  WatchdogScope(const WatchdogScope&) = delete;
  WatchdogScope& operator=(const WatchdogScope&) = delete;
};

}  // namespace llamaft
