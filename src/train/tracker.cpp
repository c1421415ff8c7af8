// The follower process of output.tracker (see tracker.hpp). Everything here is
// best effort: no function throws, a problem is one line on stderr.
#include "train/tracker.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include "core/util.hpp"

extern char** environ;

namespace llamaft {

namespace {

bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string exe_dir() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) return "";
  std::string exe(buf.data(), static_cast<size_t>(n));
  return exe.substr(0, exe.rfind('/'));
}

// Writes `text` to `path` whole: a temporary and a rename, so the follower
// never reads half a marker.
bool write_marker(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << text << "\n";
    if (!f.good()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

const char* kWarn = "llamaft train: tracker: ";

}  // namespace

TrackerSettings TrackerSettings::from_config(const Config& cfg) {
  TrackerSettings t;
  t.tracker = cfg.get_string("output.tracker");
  t.python = cfg.get_string("tracker.python");
  t.script = cfg.get_string("tracker.script");
  t.finish_timeout_s = cfg.get_float("tracker.finish_timeout_s");
  return t;
}

std::string tracker_script_path(const TrackerSettings& settings) {
  std::vector<std::string> candidates;
  if (!settings.script.empty()) return settings.script;
  if (const char* env = std::getenv("LLAMAFT_TRACK_SCRIPT")) candidates.push_back(env);
#ifdef LLAMAFT_SOURCE_DIR
  candidates.push_back(std::string(LLAMAFT_SOURCE_DIR) + "/scripts/llamaft_track.py");
#endif
  const std::string dir = exe_dir();
  if (!dir.empty()) {
    candidates.push_back(dir + "/../scripts/llamaft_track.py");
    candidates.push_back(dir + "/../share/llamaft/llamaft_track.py");
  }
  for (const auto& c : candidates)
    if (is_file(c)) return c;
  return "";
}

TrackerFollower::TrackerFollower(const TrackerSettings& settings, const std::string& out_dir, bool lead) {
  if (!lead || settings.tracker == "none") return;
  timeout_s_ = settings.finish_timeout_s;
  state_dir_ = out_dir + "/tracker";
  const std::string& tracker = settings.tracker;
  const std::string& python = settings.python;
  const std::string script = tracker_script_path(settings);
  if (script.empty() || !is_file(script)) {
    std::cerr << kWarn << "the follower script llamaft_track.py was not found (set tracker.script); training goes on "
              << "without " << tracker << "; log the run later with `llamaft track " << out_dir << "`\n";
    return;
  }
  try {
    make_directories(state_dir_);
  } catch (const std::exception& e) {
    std::cerr << kWarn << e.what() << "; training goes on without " << tracker << "\n";
    return;
  }
  std::remove((state_dir_ + "/finish").c_str());  // a marker left by the previous job of this run

  const std::string log = state_dir_ + "/follower.log";
  const std::string parent = std::to_string(::getpid());
  std::vector<std::string> args = {python, script, "follow", out_dir, "--parent-pid", parent, "--warn-fd", "3"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  // fd 3: our stderr, for the follower's warnings; 0: /dev/null; 1 and 2: the log.
  posix_spawn_file_actions_adddup2(&fa, 2, 3);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  posix_spawn_file_actions_addclosefrom_np(&fa, 4);  // no MPI socket or HDF5 file lives on in the follower
#endif
  // Its own process group (a Ctrl-C or mpirun's signals reach the ranks, not
  // the follower, which sees its parent go and finishes), default signals, no mask.
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGUSR1, SIGUSR2, SIGCHLD}) sigaddset(&defaults, s);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, python.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    std::cerr << kWarn << "cannot start '" << python << "' (tracker.python): " << std::strerror(rc)
              << "; training goes on without " << tracker << "; log the run later with `llamaft track " << out_dir
              << " --tracker.python PYTHON`\n";
    return;
  }
  pid_ = pid;
}

void TrackerFollower::finish() noexcept { stop("final"); }

TrackerFollower::~TrackerFollower() {
  // Unwinding from an error: the other ranks wait for the abort, so wait less.
  if (std::uncaught_exceptions() > 0) timeout_s_ = std::min(timeout_s_, 5.0);
  stop("stop");
}

void TrackerFollower::stop(const char* how) noexcept {
  if (pid_ <= 0) return;
  const pid_t pid = pid_;
  pid_ = -1;
  try {
    if (!write_marker(state_dir_ + "/finish", how)) ::kill(pid, SIGTERM);  // the signal means "stop" too
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
    int status = 0;
    pid_t done = 0;
    while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (done == 0) {
      std::cerr << kWarn << "the follower (pid " << pid << ") is still logging after " << timeout_s_
                << " s (tracker.finish_timeout_s); it goes on in the background; `llamaft track "
                << state_dir_.substr(0, state_dir_.size() - 8) << "` completes the run later\n";
      return;
    }
    // Exit 3: the follower already gave its one warning (missing or failing client).
    if (done == pid && WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 3)
      std::cerr << kWarn << "the follower exited with " << WEXITSTATUS(status) << "; see " << state_dir_
                << "/follower.log\n";
    if (done == pid && WIFSIGNALED(status))
      std::cerr << kWarn << "the follower was killed by signal " << WTERMSIG(status) << "; see " << state_dir_
                << "/follower.log\n";
  } catch (...) {
  }
}

}  // namespace llamaft
