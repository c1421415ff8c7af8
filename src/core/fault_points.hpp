// Named fault points: the one seam through which tests make production code
// fail on purpose (a user error on one rank, a NaN loss, a SIGKILL in the
// middle of a checkpoint save). Production code asks `fault::armed(point)`;
// nothing else reads the environment for this. The points are armed once, at
// start-up, from LLAMAFT_FAULTS ("name=value,name=value"), or directly by
// in-process tests with fault::arm(). Unknown names are an error, so a typo
// in a test cannot silently disarm it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace llamaft::fault {

enum class Point {
  kFailRank,       // fail_rank=R: rank R raises a user error at start-up
  kNanLossFrom,    // nan_loss_from=S: from step S on, the last rank's loss is NaN
  kKillInSave,     // kill_in_save=S: SIGKILL on rank 0 while writing step S's checkpoint
  kMapWeights,     // map_weights=1: the HF weights are also mmapped and every page touched, as the old
                   // reader did (the memory test shows that its bound catches it)
  kSaveEnospc,     // save_enospc=S: the last rank's checkpoint writer gets ENOSPC after its first piece of step S
                   // (a filesystem without fallocate, or a quota, fills during the write)
  kSavePieceDelay, // save_piece_delay_ms=N: every checkpoint writer sleeps N ms after each piece, so a kill or a
                   // signal lands in the middle of a save
  kCommitRenameFail, // commit_rename_fail=S: committing step S over an existing step_S folder, the rename of the
                     // new folder into place fails with EIO (after the earlier copy was moved aside)
  kKillInCommit,   // kill_in_commit=S: committing step S over an existing step_S folder, SIGKILL on rank 0 right
                   // after the earlier copy was moved aside (the window remove_stale() repairs)
};

// The value the point was armed with, or nothing.
std::optional<int64_t> armed(Point p);
void arm(Point p, int64_t value);
void disarm_all();
// Parses LLAMAFT_FAULTS (called once by main); errors name the bad entry.
void arm_from_environment();

}  // namespace llamaft::fault
