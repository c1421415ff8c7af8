// Issue 31 item 4: no two ranks share a GPU unless asked (runtime.share_gpus).
#include <gtest/gtest.h>

#include "backend/registry.hpp"
#include "core/error.hpp"

namespace llamaft {
namespace {

std::string refusal(int local_size, int devices, bool share) {
  try {
    check_gpu_sharing(local_size, devices, share, "node7");
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), kExitUserError);
    return e.what();
  }
  return "";
}

TEST(GpuSharing, OneRankPerGpuOrFewerIsFine) {
  EXPECT_EQ(refusal(4, 4, false), "");
  EXPECT_EQ(refusal(1, 8, false), "");
  EXPECT_EQ(refusal(2, 0, false), "");  // no GPU: pick_local_device says so itself
}

TEST(GpuSharing, MoreRanksThanGpusIsRefusedNamingHostAndFix) {
  const std::string msg = refusal(8, 4, false);
  EXPECT_NE(msg.find("8 ranks on host node7 see 4 GPUs"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--ntasks-per-node"), std::string::npos) << msg;
  EXPECT_NE(msg.find("runtime.share_gpus = true"), std::string::npos) << msg;
  EXPECT_NE(refusal(2, 1, false).find("see 1 GPU:"), std::string::npos);
}

TEST(GpuSharing, SharingOnRequest) { EXPECT_EQ(refusal(8, 1, true), ""); }

}  // namespace
}  // namespace llamaft
