// CheckpointManager: a save/load round trip gives back every shard (master
// weights and both AdamW moments) to the bit and the TrainState exactly,
// commits `latest` and a manifest, and a checkpoint written at one rank
// count loads at another (np 2 -> 1 and 1 -> 2 within this binary, through
// MPI_COMM_SELF communicators; at np 1 both sides have one rank). A
// mismatched run and a truncated file are refused on every rank.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.hpp"
#include "mpi_unit_util.hpp"
#include "parallel/fsdp.hpp"

namespace fs = std::filesystem;

namespace llamaft {
namespace {

using mpi_unit::cpu;
using mpi_unit::irregular;
using mpi_unit::world;

// A fresh folder that every rank of the world knows, removed at the end.
class SharedDir {
 public:
  SharedDir() {
    char buf[4096] = {0};
    if (world().rank() == 0) {
      std::string tmpl = (fs::temp_directory_path() / "llamaft_ckpt_XXXXXX").string();
      if (mkdtemp(tmpl.data())) std::snprintf(buf, sizeof(buf), "%s", tmpl.c_str());
    }
    world().broadcast(buf, sizeof(buf), 0);
    path_ = buf;
  }
  ~SharedDir() {
    world().barrier();
    std::error_code ec;
    if (world().rank() == 0 && !path_.empty()) fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

float* state_buffer(Fsdp& fsdp, int unit, int k) {
  return k == 0 ? fsdp.master(unit) : k == 1 ? fsdp.exp_avg(unit) : fsdp.exp_avg_sq(unit);
}

// Master weights and moments as functions of (unit, logical element, k).
void fill(Fsdp& fsdp) {
  for (int u = 0; u < fsdp.num_units(); ++u) {
    const ShardGeometry& g = fsdp.geometry(u);
    for (int k = 0; k < 3; ++k)
      for (int64_t j = 0; j < g.shard_size; ++j)
        state_buffer(fsdp, u, k)[j] = g.begin + j < g.numel ? irregular(u, g.begin + j, 1 + k) : 0.f;
  }
}

// Elements whose bits differ from fill()'s; padding must be zero.
int64_t mismatches(Fsdp& fsdp) {
  int64_t bad = 0;
  for (int u = 0; u < fsdp.num_units(); ++u) {
    const ShardGeometry& g = fsdp.geometry(u);
    for (int k = 0; k < 3; ++k)
      for (int64_t j = 0; j < g.shard_size; ++j) {
        const float want = g.begin + j < g.numel ? irregular(u, g.begin + j, 1 + k) : 0.f;
        const float got = state_buffer(fsdp, u, k)[j];
        bad += std::memcmp(&want, &got, sizeof(float)) != 0;
      }
  }
  return bad;
}

RunIdentity identity(const LlamaConfig& mc) {
  RunIdentity id;
  id.model_config_json = mc.to_json();
  id.method = "full";
  id.base_fingerprint = "0123456789abcdef";
  id.global_batch = 8;
  id.seed = 17;
  id.data_path = "/data/train.bin";
  id.seq_len = 32;
  id.strategy = "full_shard";
  return id;
}

TrainState some_state() {
  TrainState s;
  s.step = 7;
  s.consumed_rows = 56;
  s.consumed_tokens = 1234567;
  s.skips_in_row = 1;
  return s;
}

void expect_same(const TrainState& a, const TrainState& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.consumed_rows, b.consumed_rows);
  EXPECT_EQ(a.consumed_tokens, b.consumed_tokens);
  EXPECT_EQ(a.skips_in_row, b.skips_in_row);
}

TEST(Checkpoint, RoundTripIsBitIdentical) {
  SharedDir dir;
  ASSERT_FALSE(dir.path().empty());
  const LlamaConfig mc = mpi_unit::small_config();
  const ParamLayout layout(mc);
  const RunIdentity id = identity(mc);
  CheckpointManager ckpt(world(), dir.path(), 2);
  ckpt.remove_stale();
  std::string saved;
  {
    Fsdp fsdp(layout, cpu(), world(), FsdpOptions{ShardStrategy::kFullShard});
    fill(fsdp);
    saved = ckpt.save(fsdp, cpu(), some_state(), id);
  }
  EXPECT_EQ(saved, dir.path() + "/step_000007");
  EXPECT_TRUE(fs::exists(saved + "/manifest.json"));
  EXPECT_TRUE(fs::exists(saved + "/state.h5"));
  std::ifstream latest(dir.path() + "/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "step_000007");
  ASSERT_EQ(ckpt.auto_candidates(), std::vector<std::string>{saved});
  // Every rank wrote its own slices: the bytes counted are the whole state.
  uint64_t trainable = 0;
  for (const auto& u : layout.units()) trainable += static_cast<uint64_t>(u.numel);
  EXPECT_EQ(ckpt.last_save().bytes, 3 * 4 * trainable);

  Fsdp fresh(layout, cpu(), world(), FsdpOptions{ShardStrategy::kFullShard});
  EXPECT_GT(mismatches(fresh), 0);  // the comparison can fail: zeros are not the saved state
  const TrainState st = ckpt.load(saved, fresh, cpu(), id);
  expect_same(st, some_state());
  EXPECT_EQ(mismatches(fresh), 0) << "rank " << world().rank();
}

TEST(Checkpoint, ResumesAtAnotherRankCount) {
  SharedDir dir;
  ASSERT_FALSE(dir.path().empty());
  const LlamaConfig mc = mpi_unit::small_config();
  const ParamLayout layout(mc);
  const RunIdentity id = identity(mc);
  MpiCommunicator self(MPI_COMM_SELF, false);

  // Saved by every rank, loaded by each rank alone.
  const std::string wide = dir.path() + "/wide";
  std::string saved;
  {
    CheckpointManager ckpt(world(), wide, 2);
    ckpt.remove_stale();
    Fsdp fsdp(layout, cpu(), world(), FsdpOptions{ShardStrategy::kFullShard});
    fill(fsdp);
    saved = ckpt.save(fsdp, cpu(), some_state(), id);
  }
  {
    CheckpointManager alone(self, wide, 2);
    Fsdp fsdp(layout, cpu(), self, FsdpOptions{ShardStrategy::kFullShard});
    expect_same(alone.load(saved, fsdp, cpu(), id), some_state());
    EXPECT_EQ(mismatches(fsdp), 0) << "np " << world().size() << " -> 1, rank " << world().rank();
  }
  world().barrier();

  // Saved by rank 0 alone, loaded by every rank.
  const std::string narrow = dir.path() + "/narrow";
  TrainState later = some_state();
  later.step = 9;
  if (world().rank() == 0) {
    CheckpointManager alone(self, narrow, 2);
    alone.remove_stale();
    Fsdp fsdp(layout, cpu(), self, FsdpOptions{ShardStrategy::kFullShard});
    fill(fsdp);
    saved = alone.save(fsdp, cpu(), later, id);
  }
  world().barrier();
  CheckpointManager ckpt(world(), narrow, 2);
  const auto candidates = ckpt.auto_candidates();
  ASSERT_EQ(candidates.size(), 1u);
  Fsdp fsdp(layout, cpu(), world(), FsdpOptions{ShardStrategy::kShardGradOp});
  expect_same(ckpt.load(candidates[0], fsdp, cpu(), id), later);
  EXPECT_EQ(mismatches(fsdp), 0) << "1 -> np " << world().size() << ", rank " << world().rank();
}

TEST(Checkpoint, RefusesAnotherRunAndATruncatedFileOnEveryRank) {
  SharedDir dir;
  ASSERT_FALSE(dir.path().empty());
  const LlamaConfig mc = mpi_unit::small_config();
  const ParamLayout layout(mc);
  const RunIdentity id = identity(mc);
  CheckpointManager ckpt(world(), dir.path(), 2);
  Fsdp fsdp(layout, cpu(), world(), FsdpOptions{ShardStrategy::kFullShard});
  fill(fsdp);
  const std::string saved = ckpt.save(fsdp, cpu(), some_state(), id);

  RunIdentity other = id;
  other.seed = 18;
  try {
    ckpt.load(saved, fsdp, cpu(), other);
    ADD_FAILURE() << "a checkpoint of another seed loaded";
  } catch (const CheckpointError& e) {
    ADD_FAILURE() << "a mismatch is a user error, not an unusable checkpoint: " << e.what();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.seed"), std::string::npos) << e.what();
  }

  world().barrier();
  if (world().rank() == 0) fs::resize_file(saved + "/state.h5", 1000);
  world().barrier();
  EXPECT_THROW(ckpt.load(saved, fsdp, cpu(), id), CheckpointError);
}

}  // namespace
}  // namespace llamaft
