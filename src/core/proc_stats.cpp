#include "core/proc_stats.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace llamaft {

ProcMemory read_proc_memory() {
  ProcMemory m;
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return m;
  char line[256];
  while (std::fgets(line, sizeof(line), f)) {
    long long kib = 0;
    if (std::sscanf(line, "VmHWM: %lld kB", &kib) == 1) m.hwm = kib * 1024;
    else if (std::sscanf(line, "VmRSS: %lld kB", &kib) == 1) m.rss = kib * 1024;
    else if (std::sscanf(line, "RssAnon: %lld kB", &kib) == 1) m.anon = kib * 1024;
    else if (std::sscanf(line, "RssFile: %lld kB", &kib) == 1) m.file = kib * 1024;
    else if (std::sscanf(line, "RssShmem: %lld kB", &kib) == 1) m.shmem = kib * 1024;
  }
  std::fclose(f);
  return m;
}

bool reset_peak_rss() {
  std::FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (!f) return false;
  const bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

double process_age_seconds() {
  // Field 22 of /proc/self/stat, after the parenthesised command name (which
  // may hold spaces), is the start time in clock ticks since boot.
  std::ifstream stat("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  std::ifstream up("/proc/uptime");
  double uptime = -1;
  if (close == std::string::npos || !(up >> uptime)) return -1;
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  for (int i = 3; i < 22 && rest >> field; ++i) {
  }
  unsigned long long start_ticks = 0;
  if (!(rest >> start_ticks)) return -1;
  const long hz = sysconf(_SC_CLK_TCK);
  return hz > 0 ? uptime - static_cast<double>(start_ticks) / static_cast<double>(hz) : -1;
}

MemoryPhases::MemoryPhases() : current_("startup") {
  sample();
  sampler_ = std::thread([this] {
    while (!stop_.load(std::memory_order_relaxed)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      sample();
    }
  });
}

MemoryPhases::~MemoryPhases() {
  stop_ = true;
  if (sampler_.joinable()) sampler_.join();
}

void MemoryPhases::sample() {
  const ProcMemory m = read_proc_memory();
  auto raise = [](std::atomic<int64_t>& a, int64_t v) {
    int64_t cur = a.load(std::memory_order_relaxed);
    while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
  };
  raise(anon_, m.anon);
  raise(file_, m.file);
  raise(shmem_, m.shmem);
}

MemoryPhases::Peak MemoryPhases::switch_to(const std::string& next) {
  sample();
  Peak p;
  p.hwm = read_proc_memory().hwm;
  p.anon = anon_.exchange(0);
  p.file = file_.exchange(0);
  p.shmem = shmem_.exchange(0);
  reset_peak_rss();
  current_ = next;
  sample();
  return p;
}

}  // namespace llamaft
