// Errors: one exception type for user-facing failures, and the CHECK macros.
// Every report carries rank, host and file:line so a message from rank 37 of
// a 64-rank job can be traced. User errors (config, files, shapes) are
// thrown as llamaft::Error; main() catches them, prints once, and brings all
// ranks down.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace llamaft {

// Exit codes, documented in README.md and used by the Slurm scripts.
enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,     // a bug: an invariant failed
  kExitUserError = 2,    // bad config or input; never requeue
  kExitDiverged = 3,     // NaN/divergence policy stop
  kExitBadCheckpoint = 4,
  kExitCommFailure = 5,
  kExitRequeue = 85,     // checkpoint committed after a signal: requeue me
  kExitInterrupted = 130, // SIGINT (Ctrl-C): checkpoint committed, then exit as shells report an interrupt
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg, int exit_code = kExitUserError)
      : std::runtime_error(msg), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }
  // The same failure, agreed by every rank, whose message another rank
  // prints: main() exits with the code without printing it again.
  static Error reported_elsewhere(const std::string& msg, int exit_code = kExitUserError) {
    Error e(msg, exit_code);
    e.mark_reported_elsewhere();
    return e;
  }
  bool is_reported_elsewhere() const { return reported_elsewhere_; }
  void mark_reported_elsewhere() { reported_elsewhere_ = true; }
  // The same failure on every rank at the same point, agreed before any
  // other collective (the configuration): every rank exits cleanly with the
  // code, and only the rank given print_here prints it.
  static Error agreed(const std::string& msg, int exit_code, bool print_here) {
    Error e(msg, exit_code);
    e.agreed_ = true;
    e.reported_elsewhere_ = !print_here;
    return e;
  }
  bool is_agreed() const { return agreed_; }

 private:
  int exit_code_;
  bool reported_elsewhere_ = false;
  bool agreed_ = false;
};

// Process identity used in messages; set once MPI is up (rank -1 before).
void set_process_identity(int rank, int world_size);
int process_rank();
const std::string& process_host();
std::string where_prefix();  // "[rank 3 @ host] "

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

// Internal invariant failure: carries the statement and file:line.
[[noreturn]] void fail_check(const char* stmt, const char* file, int line, const std::string& msg);

}  // namespace llamaft

// A user-facing error: the message must say what to do.
#define LLAMAFT_FAIL(...) throw ::llamaft::Error(::llamaft::str_cat(__VA_ARGS__))

// Input validation that throws a user error when cond is false.
#define LLAMAFT_REQUIRE(cond, ...) \
  do {                             \
    if (!(cond)) LLAMAFT_FAIL(__VA_ARGS__); \
  } while (0)

// Internal invariant: a failure here is a bug; reports statement and file:line.
#define LLAMAFT_CHECK(cond, ...)                                                        \
  do {                                                                                  \
    if (!(cond)) ::llamaft::fail_check(#cond, __FILE__, __LINE__, ::llamaft::str_cat(__VA_ARGS__)); \
  } while (0)
