// The progress line's schedule and text when stderr is not a terminal
// (train/progress.hpp): first step, every N steps or T seconds, last step.
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "train/progress.hpp"

namespace llamaft {
namespace {

std::vector<int64_t> printed_steps(Progress& p, int64_t first, int64_t last, int sleep_ms_at = -1) {
  std::vector<int64_t> out;
  for (int64_t s = first; s <= last; ++s) {
    if (s == sleep_ms_at) std::this_thread::sleep_for(std::chrono::milliseconds(120));
    ProgressPoint pt;
    pt.step = s;
    pt.loss = 1.5;
    pt.lr = 1e-4;
    pt.tokens_per_s = 12345;
    pt.mfu = 0.25;
    pt.peak_bytes = 3 << 20;
    if (p.update(pt)) out.push_back(s);
  }
  return out;
}

TEST(Progress, FirstEveryNAndLastStepInAFile) {
  Progress p(true, 0, 35, 10, 60);
  p.set_terminal(false);
  testing::internal::CaptureStderr();
  EXPECT_EQ(printed_steps(p, 1, 35), (std::vector<int64_t>{1, 10, 20, 30, 35}));
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("llamaft train: step 10/35 (28.6%) loss 1.5000 lr 1.00e-04 12.3k tok/s MFU 25.0% elapsed 0:00 "
                     "ETA 0:00 peak mem 3 MiB\n"),
            std::string::npos)
      << err;
  EXPECT_EQ(err.find('\r'), std::string::npos);
}

TEST(Progress, TimeTriggersALineBetweenSteps) {
  Progress p(true, 100, 200, 50, 0.1);  // resumed at step 100; a line at least every 0.1 s
  p.set_terminal(false);
  testing::internal::CaptureStderr();
  EXPECT_EQ(printed_steps(p, 101, 120, 107), (std::vector<int64_t>{101, 107}));
  testing::internal::GetCapturedStderr();
}

TEST(Progress, DisabledPrintsNothing) {
  Progress p(false, 0, 5, 1, 60);
  p.set_terminal(false);
  testing::internal::CaptureStderr();
  EXPECT_TRUE(printed_steps(p, 1, 5).empty());
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST(Progress, Durations) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(65.4), "1:05");
  EXPECT_EQ(format_duration(3 * 3600 + 62), "3:01:02");
  EXPECT_EQ(format_duration(2 * 86400 + 3661), "2d 1:01:01");
  EXPECT_EQ(format_duration(-1), "?");
}

}  // namespace
}  // namespace llamaft
