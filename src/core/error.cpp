#include "core/error.hpp"

#include <unistd.h>

namespace llamaft {
namespace {
int g_rank = -1;
int g_world = 0;
std::string& host_storage() {
  static std::string host = [] {
    char buf[256] = {0};
    if (gethostname(buf, sizeof(buf) - 1) != 0) return std::string("unknown-host");
    return std::string(buf);
  }();
  return host;
}
}  // namespace

void set_process_identity(int rank, int world_size) {
  g_rank = rank;
  g_world = world_size;
}
int process_rank() { return g_rank; }
const std::string& process_host() { return host_storage(); }

std::string where_prefix() {
  if (g_rank < 0) return "";
  return str_cat("[rank ", g_rank, "/", g_world, " @ ", process_host(), "] ");
}

void fail_check(const char* stmt, const char* file, int line, const std::string& msg) {
  throw Error(str_cat("internal error: check `", stmt, "` failed at ", file, ":", line,
                      msg.empty() ? "" : ": ", msg),
              kExitInternal);
}

}  // namespace llamaft
