// Preemption signals. The handler only sets a flag (async-signal-safe); the
// training loop all-reduces it at each step boundary so every rank agrees,
// saves collectively and exits with kExitRequeue (kExitInterrupted, 130,
// after SIGINT, which is always caught). A second signal exits at once (the
// previous checkpoint stays intact); so does the grace timer when a save
// overruns it.
#pragma once

#include <string>
#include <vector>

namespace llamaft {

// Parses "SIGTERM,SIGUSR1,SIGUSR2" (or names without SIG, or numbers).
std::vector<int> parse_signal_list(const std::string& list);
void install_preemption_handlers(const std::vector<int>& signals);
// The default list (SIGTERM, SIGUSR1, SIGUSR2) with no allocation: safe to
// call before any library is initialised (main.cpp's .preinit_array entry).
void install_default_preemption_handlers();
int preemption_signal();  // 0 when none arrived
// Arms SIGALRM: if the save takes longer than `seconds`, exit(kExitGraceExpired).
void arm_grace_timer(int seconds);

constexpr int kExitSecondSignal = 86;
constexpr int kExitGraceExpired = 87;

}  // namespace llamaft
