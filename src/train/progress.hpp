// The live progress line on a terminal: step, loss, tokens/s, ETA and memory,
// throttled to a few updates a second, and silent when stderr is piped.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>

namespace llamaft {

class Progress {
 public:
  Progress(bool enabled, int64_t total) : enabled_(enabled && isatty(STDERR_FILENO)), total_(total) {}
  void update(int64_t step, double loss, double tokens_per_s, size_t peak_bytes) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (step != total_ && now - last_ < std::chrono::milliseconds(250)) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double eta = step > 0 ? elapsed / step * (total_ - step) : 0;
    std::fprintf(stderr, "\rstep %lld/%lld  loss %.4f  %.0f tok/s  ETA %d:%02d  mem %.0f MiB   ",
                 static_cast<long long>(step), static_cast<long long>(total_), loss, tokens_per_s,
                 static_cast<int>(eta) / 60, static_cast<int>(eta) % 60, static_cast<double>(peak_bytes) / 1048576.0);
    std::fflush(stderr);
  }
  void finish() {
    if (enabled_) std::fprintf(stderr, "\n");
  }

 private:
  bool enabled_;
  int64_t total_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_{};
};

}  // namespace llamaft
