#include "checkpoint/preemption.hpp"

#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "core/error.hpp"

namespace llamaft {

namespace {
volatile sig_atomic_t g_signal = 0;

void on_signal(int sig) {
  if (g_signal != 0) {
    if (sig == SIGINT) {  // Ctrl-C twice: out now, as a shell user expects
      static const char msg[] = "llamaft: interrupted again, exiting without a checkpoint\n";
      (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
      _exit(kExitInterrupted);
    }
    static const char msg[] = "llamaft: second preemption signal, exiting without a checkpoint\n";
    (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
    _exit(kExitSecondSignal);
  }
  g_signal = sig;
}

void on_alarm(int) {
  static const char msg[] = "llamaft: checkpoint grace period expired, exiting\n";
  (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
  _exit(kExitGraceExpired);
}
}  // namespace

std::vector<int> parse_signal_list(const std::string& list) {
  std::vector<int> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) continue;
    std::string name = item.rfind("SIG", 0) == 0 ? item.substr(3) : item;
    if (name == "TERM") out.push_back(SIGTERM);
    else if (name == "USR1") out.push_back(SIGUSR1);
    else if (name == "USR2") out.push_back(SIGUSR2);
    else if (name == "INT") out.push_back(SIGINT);
    else LLAMAFT_FAIL("checkpoint.signals: unsupported signal '", item, "' (SIGTERM, SIGUSR1, SIGUSR2, SIGINT)");
  }
  return out;
}

namespace {
void install_one(int signal) {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(signal, &sa, nullptr);
}
}  // namespace

// SIGINT (Ctrl-C) is always caught: it checkpoints at the next step boundary
// and exits kExitInterrupted; a second one exits at once.
void install_preemption_handlers(const std::vector<int>& signals) {
  for (int s : signals) install_one(s);
  install_one(SIGINT);
}

void install_default_preemption_handlers() {
  for (int s : {SIGTERM, SIGUSR1, SIGUSR2, SIGINT}) install_one(s);
}

int preemption_signal() { return g_signal; }

void arm_grace_timer(int seconds) {
  if (seconds <= 0) return;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_alarm;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, nullptr);
  alarm(static_cast<unsigned>(seconds));
}

}  // namespace llamaft
