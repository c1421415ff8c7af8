// train.profile's report: the backend's per-family counters (the profiling
// backend's wall time, bytes and FLOPs, backend/profiling_backend.cpp)
// summed over the run's steps after the first, set against the step's time
// and against this machine's limits measured at the end of the run: the
// backend's best square GEMM (fp32, and bf16 under bf16 storage) and its
// copy bandwidth, all ranks at once.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "backend/backend.hpp"
#include "backend/step_counters.hpp"
#include "comm/communicator.hpp"

namespace llamaft {

class StepProfile {
 public:
  // One step's counters and wall time (the first step of a run is left out:
  // it allocates and warms up).
  void add(const StepCounters& c, double step_s);
  bool empty() const { return steps_ == 0; }
  // Collective over `world`: measures the limits (every rank at once, as they
  // share the node while training), then returns rank 0's table as JSON.
  nlohmann::ordered_json finish(Backend& be, Communicator& world, bool bf16);
  // The table, one line a family, for the log.
  static std::string format(const nlohmann::ordered_json& profile);

 private:
  StepCounters sum_;
  int64_t steps_ = 0, seen_ = 0;
  double step_s_ = 0;
};

}  // namespace llamaft
