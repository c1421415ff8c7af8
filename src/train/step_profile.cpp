#include "train/step_profile.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "train/mfu.hpp"

namespace llamaft {

namespace {

// The backend's copy bandwidth (bytes read + written per second): the best
// of a few copies of 256 MiB, far beyond the caches.
double measure_copy_bandwidth(Backend& be, double budget_s) {
  using Clock = std::chrono::steady_clock;
  const size_t bytes = size_t(256) << 20;
  const size_t mark = be.peak_bytes();
  float* a = static_cast<float*>(be.alloc_bytes(bytes));
  float* b = static_cast<float*>(be.alloc_bytes(bytes));
  be.fill(a, 1.0f, bytes / sizeof(float));
  be.fill(b, 0.0f, bytes / sizeof(float));
  double best = 0;
  const auto start = Clock::now();
  do {
    const auto t0 = Clock::now();
    be.copy(b, a, bytes);
    be.synchronize();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s > 0) best = std::max(best, 2.0 * static_cast<double>(bytes) / s);
  } while (std::chrono::duration<double>(Clock::now() - start).count() < budget_s);
  be.free_bytes(b);
  be.free_bytes(a);
  be.restore_peak_bytes(mark);
  return best;
}

bool is_bf16_family(const std::string& name) { return name.rfind("gemm_bf16", 0) == 0; }

}  // namespace

void StepProfile::add(const StepCounters& c, double step_s) {
  if (seen_++ == 0) return;
  ++steps_;
  step_s_ += step_s;
  for (const auto& [name, f] : c.ops) {
    StepCounters::Family& s = sum_.ops[name];
    s.calls += f.calls;
    s.bytes += f.bytes;
    s.flops += f.flops;
    s.seconds += f.seconds;
  }
}

nlohmann::ordered_json StepProfile::finish(Backend& be, Communicator& world, bool bf16) {
  // The limits, every rank at once (ranks on one node share its cores and
  // memory), summed and then shared out per rank as training shares them.
  double v[3] = {measure_gemm_peak(be, false, 1.0, 1024).flops_per_s,
                 bf16 ? measure_gemm_peak(be, true, 1.0, 2048).flops_per_s : 0.0, measure_copy_bandwidth(be, 1.0)};
  world.all_reduce_sum(v, 3);
  const double ranks = world.size();
  const double fp32_peak = v[0] / ranks, bf16_peak = v[1] / ranks, bandwidth = v[2] / ranks;
  const double n = static_cast<double>(steps_);
  const double step_s = step_s_ / n;

  std::vector<std::pair<std::string, StepCounters::Family>> rows(sum_.ops.begin(), sum_.ops.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  nlohmann::ordered_json families = nlohmann::ordered_json::array();
  double inside = 0, gemm_s = 0;
  for (const auto& [name, f] : rows) {
    const double s = f.seconds / n;
    inside += s;
    if (name.rfind("gemm", 0) == 0) gemm_s += s;
    const double flops_per_s = f.seconds > 0 ? f.flops / f.seconds : 0;
    const double bytes_per_s = f.seconds > 0 ? f.bytes / f.seconds : 0;
    // Compute-bound families against the GEMM peak of their operands;
    // the rest against the copy bandwidth.
    const bool compute = f.flops > 0;
    const bool on_bf16 = compute && (is_bf16_family(name) || (bf16 && name == "attention"));
    const double limit = !compute ? bandwidth : on_bf16 ? bf16_peak : fp32_peak;
    const double rate = compute ? flops_per_s : bytes_per_s;
    families.push_back({{"family", name},
                        {"calls_per_step", static_cast<double>(f.calls) / n},
                        {"seconds_per_step", s},
                        {"share_of_step", step_s > 0 ? s / step_s : 0},
                        {"gflop_per_step", f.flops / n / 1e9},
                        {"gb_per_step", f.bytes / n / 1e9},
                        {"gflop_per_s", flops_per_s / 1e9},
                        {"gb_per_s", bytes_per_s / 1e9},
                        {"limit", !compute ? "copy bandwidth" : on_bf16 ? "bf16 GEMM peak" : "fp32 GEMM peak"},
                        {"fraction_of_limit", limit > 0 ? rate / limit : 0}});
  }
  const double outside = std::max(0.0, step_s - inside);
  return {{"steps", steps_},
          {"step_s", step_s},
          {"backend_s", inside},
          {"gemm_share", step_s > 0 ? gemm_s / step_s : 0},
          {"outside_backend_s", outside},
          {"outside_backend_share", step_s > 0 ? outside / step_s : 0},
          {"limits_per_rank",
           {{"fp32_gemm_gflop_per_s", fp32_peak / 1e9},
            {"fp32_gemm_size", 1024},
            {"bf16_gemm_gflop_per_s", bf16_peak / 1e9},
            {"bf16_gemm_size", bf16 ? 2048 : 0},
            {"copy_gb_per_s", bandwidth / 1e9},
            {"ranks", world.size()}}},
          {"families", families}};
}

std::string StepProfile::format(const nlohmann::ordered_json& p) {
  std::string out;
  char line[256];
  const auto& lim = p["limits_per_rank"];
  std::snprintf(line, sizeof line,
                "llamaft train: profile of rank 0 over %lld steps, %.4f s a step; limits per rank: fp32 GEMM %.1f "
                "GFLOP/s, bf16 GEMM %.1f GFLOP/s, copy %.2f GB/s\n",
                static_cast<long long>(p["steps"].get<int64_t>()), p["step_s"].get<double>(),
                lim["fp32_gemm_gflop_per_s"].get<double>(), lim["bf16_gemm_gflop_per_s"].get<double>(),
                lim["copy_gb_per_s"].get<double>());
  out += line;
  std::snprintf(line, sizeof line, "  %-20s %8s %10s %7s %10s %9s %9s %8s  %s\n", "family", "calls", "ms/step", "share",
                "GFLOP/s", "GB/s", "GB/step", "of limit", "limit");
  out += line;
  for (const auto& f : p["families"]) {
    std::snprintf(line, sizeof line, "  %-20s %8.0f %10.2f %6.1f%% %10.1f %9.2f %9.3f %7.1f%%  %s\n",
                  f["family"].get<std::string>().c_str(), f["calls_per_step"].get<double>(),
                  1e3 * f["seconds_per_step"].get<double>(), 100 * f["share_of_step"].get<double>(),
                  f["gflop_per_s"].get<double>(), f["gb_per_s"].get<double>(), f["gb_per_step"].get<double>(),
                  100 * f["fraction_of_limit"].get<double>(), f["limit"].get<std::string>().c_str());
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-20s %8s %10.2f %6.1f%%  (FSDP's collectives and copies on the host, the "
                "model's host code)\n", "outside the backend", "", 1e3 * p["outside_backend_s"].get<double>(),
                100 * p["outside_backend_share"].get<double>());
  out += line;
  return out;
}

}  // namespace llamaft
