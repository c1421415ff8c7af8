#include "core/fault_points.hpp"

#include <array>
#include <cstdlib>
#include <sstream>

#include "core/error.hpp"

namespace llamaft::fault {

namespace {
constexpr std::array<const char*, 8> kNames = {"fail_rank",   "nan_loss_from", "kill_in_save",
                                               "map_weights", "save_enospc",   "save_piece_delay_ms",
                                               "commit_rename_fail", "kill_in_commit"};
std::array<std::optional<int64_t>, kNames.size()> g_armed;
}  // namespace

std::optional<int64_t> armed(Point p) { return g_armed[static_cast<size_t>(p)]; }
void arm(Point p, int64_t value) { g_armed[static_cast<size_t>(p)] = value; }
void disarm_all() { g_armed.fill(std::nullopt); }

void arm_from_environment() {
  const char* spec = std::getenv("LLAMAFT_FAULTS");
  if (!spec) return;
  std::stringstream ss(spec);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    const std::string name = item.substr(0, eq);
    size_t i = 0;
    while (i < kNames.size() && name != kNames[i]) ++i;
    LLAMAFT_REQUIRE(i < kNames.size() && eq != std::string::npos, "LLAMAFT_FAULTS: unknown fault point '", item,
                    "' (fail_rank=R, nan_loss_from=S, kill_in_save=S, map_weights=1, save_enospc=S, "
                    "save_piece_delay_ms=N, commit_rename_fail=S, kill_in_commit=S)");
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str() + eq + 1, &end, 10);
    LLAMAFT_REQUIRE(end && *end == '\0' && end != item.c_str() + eq + 1, "LLAMAFT_FAULTS: '", item,
                    "' needs an integer value");
    g_armed[i] = v;
  }
}

}  // namespace llamaft::fault
