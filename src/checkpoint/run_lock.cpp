#include "checkpoint/run_lock.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/error.hpp"
#include "core/util.hpp"

namespace llamaft {

namespace {
namespace fs = std::filesystem;

std::string owner_text() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  const char* job = std::getenv("SLURM_JOB_ID");
  std::ostringstream o;
  o << "host=" << host << "\npid=" << getpid() << "\nslurm_job=" << (job ? job : "") << "\nstarted=" << std::time(nullptr)
    << "\n";
  return o.str();
}

std::string field(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  return "";
}

std::string describe_owner(const std::string& text) {
  if (text.empty()) return "another process (its owner file is empty)";
  std::string s = "host " + field(text, "host") + ", pid " + field(text, "pid");
  if (!field(text, "slurm_job").empty()) s += ", Slurm job " + field(text, "slurm_job");
  const std::string started = field(text, "started");
  if (!started.empty()) {
    const std::time_t t = static_cast<std::time_t>(std::atoll(started.c_str()));
    char buf[64];
    std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&t));
    s += ", started " + std::string(buf);
  }
  return s;
}

std::string read_all(int fd) {
  std::string out;
  char buf[512];
  off_t off = 0;
  for (ssize_t n; (n = pread(fd, buf, sizeof(buf), off)) > 0; off += n) out.append(buf, static_cast<size_t>(n));
  return out;
}

// Without locks: is the owner named in the file a live llamaft on this host?
bool owner_alive_here(const std::string& text) {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  if (field(text, "host") != host) return false;
  const long pid = std::atol(field(text, "pid").c_str());
  if (pid <= 0 || pid == getpid() || kill(static_cast<pid_t>(pid), 0) != 0) return false;
  std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline");
  std::string argv0;
  std::getline(cmd, argv0, '\0');
  return argv0.find("llamaft") != std::string::npos;
}
}  // namespace

std::unique_ptr<RunLock> RunLock::acquire(const std::string& dir, const std::string& role) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  LLAMAFT_REQUIRE(!ec && fs::is_directory(dir), role, " '", dir, "' cannot be created or is not a folder",
                  ec ? " (" + ec.message() + ")" : std::string());
  const std::string path = dir + "/.llamaft.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  LLAMAFT_REQUIRE(fd >= 0, role, " '", dir, "' is not writable: cannot create ", path, " (", std::strerror(errno),
                  "); checkpoints and the export go there");
  struct flock fl;
  std::memset(&fl, 0, sizeof(fl));
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (::fcntl(fd, F_SETLK, &fl) != 0) {
    const int err = errno;
    const std::string owner = read_all(fd);
    if (err == EAGAIN || err == EACCES) {
      ::close(fd);
      LLAMAFT_FAIL(role, " '", dir, "' is in use by another llamaft job (", describe_owner(owner),
                   "); two jobs on one folder would overwrite each other's checkpoints and export. Wait for it to "
                   "end, or give this run another ", role);
    }
    if (owner_alive_here(owner)) {
      ::close(fd);
      LLAMAFT_FAIL(role, " '", dir, "' is in use by another llamaft job (", describe_owner(owner),
                   "); this filesystem has no locks (", std::strerror(err), "), so only the owner file was checked");
    }
    std::cerr << "llamaft: warning: " << role << " '" << dir << "': the filesystem refuses locks ("
              << std::strerror(err) << "); a second job on this folder from another node would not be detected\n";
  }
  const std::string me = owner_text();
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size())) {
    const int err = errno;
    ::close(fd);
    LLAMAFT_FAIL(role, " '", dir, "' is not writable: cannot write ", path, " (", std::strerror(err), ")");
  }
  return std::unique_ptr<RunLock>(new RunLock(fd));
}

RunLock::~RunLock() { ::close(fd_); }

}  // namespace llamaft
