// What a device backend did during one step, counted from the arguments of
// its own calls: host synchronizations by call site, kernel launches and the
// bytes and FLOPs of every op family, cuBLAS calls. The CUDA backend keeps
// one (Backend::counters()); `train` writes it into metrics.jsonl, the
// emulator tests assert budgets on it, and bench/roofline.py turns it into a
// modelled step time. Bytes are what each op's arguments say it must read and
// write once (the ideal traffic), not what a particular kernel really moves.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace llamaft {

struct StepCounters {
  struct Family {
    int64_t calls = 0;     // backend calls
    int64_t launches = 0;  // kernels and library calls they issued
    int64_t library_calls = 0;  // of those, cuBLAS calls, copies and memsets
    double bytes = 0;      // read + written, from the arguments
    double flops = 0;      // GEMMs and attention; 0 for memory-bound families
    double seconds = 0;    // wall time inside the calls (train.profile on the CPU backend)
  };
  bool timed = false;  // whether Family::seconds is measured (the profiling backend)
  std::map<std::string, int64_t> syncs;  // host waits on the device, by call site
  std::map<std::string, Family> ops;     // by family: "gemm_bf16", "rmsnorm_fwd", ...

  void clear() {
    syncs.clear();
    ops.clear();
  }
  int64_t total_syncs() const {
    int64_t n = 0;
    for (const auto& [site, c] : syncs) n += c;
    return n;
  }
  int64_t total_launches() const {
    int64_t n = 0;
    for (const auto& [name, f] : ops) n += f.launches;
    return n;
  }
  double total(double Family::*field) const {
    double s = 0;
    for (const auto& [name, f] : ops) s += f.*field;
    return s;
  }
};

}  // namespace llamaft
