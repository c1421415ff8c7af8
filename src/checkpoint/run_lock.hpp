// One job owns an output folder. RunLock holds an advisory POSIX record lock
// (fcntl F_SETLK, whole file) on DIR/.llamaft.lock for as long as the job
// runs, with the owner's host, pid, Slurm job id and start time written in
// the file, so a second job on the same output.dir or checkpoint.dir is
// refused at start-up with who holds it, instead of deleting the first job's
// in-flight save and overwriting its checkpoints and export.
//
// Why fcntl: it is the lock NFS carries to the server (NLM on v3, in the
// protocol on v4) and Lustre makes cluster-wide with the `flock` mount option,
// so jobs on different nodes see each other; flock(2) is node-local on older
// NFS clients and on Lustre's `localflock`. The kernel (or the NFS server's
// lease, about 90 s after a node dies) drops the lock with its process, so a
// stale lock file left by a dead job is simply taken over: its contents are
// information, never the lock itself. Where the filesystem has no locks
// (ENOLCK, ENOSYS, EOPNOTSUPP: Lustre mounted `noflock`), the owner file is
// checked instead: a live llamaft process of the same host named in it is
// refused, and anything else is taken over with a warning.
#pragma once

#include <memory>
#include <string>

namespace llamaft {

class RunLock {
 public:
  // Creates `dir` if needed and locks it. Throws a user error naming the
  // owner when another job holds it, or when the folder cannot be created or
  // written (a file, read-only): found at start-up, not at the first save.
  // `role` names the folder in messages ("output.dir").
  static std::unique_ptr<RunLock> acquire(const std::string& dir, const std::string& role);
  ~RunLock();  // releases the lock (the file stays: information only)
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  explicit RunLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace llamaft
