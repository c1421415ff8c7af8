#include "train/progress.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace llamaft {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long long s = std::llround(seconds);
  const long long days = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;
  char buf[48];
  if (days > 0) std::snprintf(buf, sizeof(buf), "%lldd %lld:%02lld:%02lld", days, h, m, sec);
  else if (h > 0) std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", h, m, sec);
  else std::snprintf(buf, sizeof(buf), "%lld:%02lld", m, sec);
  return buf;
}

Progress::Progress(bool enabled, int64_t first_step, int64_t total, int64_t every_steps, double every_s)
    : enabled_(enabled),
      terminal_(isatty(STDERR_FILENO)),
      first_step_(first_step),
      total_(total),
      every_steps_(every_steps < 1 ? 1 : every_steps),
      every_s_(every_s) {}

double Progress::elapsed_s() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

double Progress::eta_s(int64_t step) const {
  const int64_t remaining = total_ - step;
  if (remaining <= 0) return 0;
  const int64_t since_first = step - (first_step_ + 1);
  if (since_first > 0) {  // the rate after the first step
    const double s = std::chrono::duration<double>(Clock::now() - first_step_done_).count();
    return s / static_cast<double>(since_first) * static_cast<double>(remaining);
  }
  const double done = static_cast<double>(step - first_step_);
  return done > 0 ? elapsed_s() / done * static_cast<double>(remaining) : NAN;
}

std::string Progress::format(const ProgressPoint& p, double elapsed) const {
  char tok[32];
  if (p.tokens_per_s >= 1e6) std::snprintf(tok, sizeof(tok), "%.2fM", p.tokens_per_s / 1e6);
  else if (p.tokens_per_s >= 1e4) std::snprintf(tok, sizeof(tok), "%.1fk", p.tokens_per_s / 1e3);
  else std::snprintf(tok, sizeof(tok), "%.0f", p.tokens_per_s);
  char mfu[24] = "?";
  if (p.mfu >= 0) std::snprintf(mfu, sizeof(mfu), "%.1f%%", 100 * p.mfu);
  char rss[48] = "";
  if (p.rss_peak_bytes > 0) std::snprintf(rss, sizeof(rss), " (rss %.0f MiB)", p.rss_peak_bytes / 1048576.0);
  char buf[320];
  std::snprintf(buf, sizeof(buf),
                "step %lld/%lld (%.1f%%) loss %.4f lr %.2e %s tok/s MFU %s elapsed %s ETA %s peak mem %.0f MiB%s",
                static_cast<long long>(p.step), static_cast<long long>(total_),
                total_ > 0 ? 100.0 * static_cast<double>(p.step) / static_cast<double>(total_) : 0.0, p.loss, p.lr,
                tok, mfu, format_duration(elapsed).c_str(), format_duration(eta_s(p.step)).c_str(),
                static_cast<double>(p.peak_bytes) / 1048576.0, rss);
  return buf;
}

bool Progress::update(const ProgressPoint& p) {
  if (!enabled_) return false;
  const auto now = Clock::now();
  if (p.step == first_step_ + 1) first_step_done_ = now;
  const bool first = last_printed_step_ < 0, last = p.step >= total_;
  if (terminal_) {
    if (!first && !last && now - last_print_ < std::chrono::milliseconds(250)) return false;
  } else {
    const bool due_steps = p.step % every_steps_ == 0;
    const bool due_time = std::chrono::duration<double>(now - last_print_).count() >= every_s_;
    if (!first && !last && !due_steps && !due_time) return false;
  }
  last_print_ = now;
  last_printed_step_ = p.step;
  const std::string line = format(p, elapsed_s());
  if (terminal_) {
    std::fprintf(stderr, "\r%s   ", line.c_str());
    open_line_ = true;
  } else {
    std::fprintf(stderr, "llamaft train: %s\n", line.c_str());
  }
  std::fflush(stderr);
  return true;
}

void Progress::finish() {
  if (enabled_ && terminal_ && open_line_) std::fprintf(stderr, "\n");
  open_line_ = false;
}

}  // namespace llamaft
