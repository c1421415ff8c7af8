// DataOrder: which rows each rank reads at each step. Contiguous order walks
// the rows in sequence, wrapping each epoch; shuffled order makes every epoch
// a permutation of the rows, a pure function of the seed; the rank blocks of
// a step partition its global batch at every rank count, so results do not
// depend on np. The last test checks that on the ranks of this run.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "mpi_unit_util.hpp"
#include "train/data_order.hpp"

namespace llamaft {
namespace {

std::vector<int64_t> global_rows(const DataOrder& order, int64_t step, int world) {
  std::vector<int64_t> all;
  for (int r = 0; r < world; ++r) {
    const auto mine = order.rows_for(step, r, world);
    all.insert(all.end(), mine.begin(), mine.end());
  }
  return all;
}

TEST(DataOrder, ContiguousWalksTheRowsAndWraps) {
  const int64_t rows = 10, batch = 4;
  const DataOrder order(rows, batch, /*shuffle=*/false, 7);
  for (int64_t step = 0; step < 6; ++step) {
    const auto got = order.rows_for(step, 0, 1);
    ASSERT_EQ(static_cast<int64_t>(got.size()), batch);
    for (int64_t j = 0; j < batch; ++j) EXPECT_EQ(got[j], (step * batch + j) % rows) << "step " << step;
  }
}

TEST(DataOrder, ShuffledEpochsArePermutations) {
  const int64_t rows = 53, batch = 8;
  const DataOrder order(rows, batch, /*shuffle=*/true, 1234);
  std::vector<std::vector<int64_t>> epochs;
  for (int64_t e = 0; e < 3; ++e) {
    std::vector<int64_t> epoch;
    for (int64_t i = 0; i < rows; ++i) epoch.push_back(order.row_at(e * rows + i));
    std::vector<int64_t> sorted = epoch;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> identity(rows);
    std::iota(identity.begin(), identity.end(), 0);
    EXPECT_EQ(sorted, identity) << "epoch " << e << " is not a permutation of the rows";
    EXPECT_NE(epoch, identity) << "epoch " << e << " is not shuffled";
    epochs.push_back(epoch);
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  // Steps read the epochs in sequence across the epoch boundary.
  for (int64_t step = 0; step < 3 * rows / batch; ++step) {
    const auto got = order.rows_for(step, 0, 1);
    for (int64_t j = 0; j < batch; ++j) {
      const int64_t pos = step * batch + j;
      EXPECT_EQ(got[j], epochs[pos / rows][pos % rows]);
    }
  }
}

TEST(DataOrder, DeterministicInTheSeed) {
  const DataOrder a(40, 5, true, 99), b(40, 5, true, 99), other(40, 5, true, 100);
  bool differs = false;
  for (int64_t step = 0; step < 20; ++step) {
    EXPECT_EQ(a.rows_for(step, 0, 1), b.rows_for(step, 0, 1)) << "step " << step;
    differs |= a.rows_for(step, 0, 1) != other.rows_for(step, 0, 1);
  }
  EXPECT_TRUE(differs) << "another seed gave the same order";
  // Queried out of order (the permutation cache), the answers are the same.
  const DataOrder c(40, 5, true, 99);
  for (int64_t step = 19; step >= 0; --step) EXPECT_EQ(c.rows_for(step, 0, 1), a.rows_for(step, 0, 1));
}

TEST(DataOrder, RankBlocksPartitionTheGlobalBatch) {
  const int64_t rows = 29, batch = 12;
  for (bool shuffle : {false, true}) {
    const DataOrder order(rows, batch, shuffle, 5);
    for (int64_t step = 0; step < 7; ++step) {
      const auto one = order.rows_for(step, 0, 1);
      for (int world : {2, 3, 4, 6, 12}) {
        for (int r = 0; r < world; ++r) {
          const auto mine = order.rows_for(step, r, world);
          ASSERT_EQ(static_cast<int64_t>(mine.size()), batch / world);
          // Rank r's block is the r-th contiguous slice of the global batch.
          EXPECT_TRUE(std::equal(mine.begin(), mine.end(), one.begin() + r * (batch / world)))
              << "shuffle " << shuffle << " step " << step << " rank " << r << " of " << world;
        }
        EXPECT_EQ(global_rows(order, step, world), one);
      }
    }
  }
}

TEST(DataOrder, TheRanksOfThisRunReadTheGlobalBatchOnce) {
  MpiCommunicator& world = mpi_unit::world();
  const int64_t rows = 31, batch = 6 * world.size();
  const DataOrder order(rows, batch, true, 42);
  for (int64_t step = 0; step < 9; ++step) {
    const auto mine = order.rows_for(step, world.rank(), world.size());
    // Each rank adds its rows into its own block of a world-sized buffer.
    std::vector<double> all(static_cast<size_t>(batch), 0.0);
    for (size_t j = 0; j < mine.size(); ++j) all[world.rank() * mine.size() + j] = static_cast<double>(mine[j]);
    world.all_reduce_sum(all.data(), all.size());
    const auto want = order.rows_for(step, 0, 1);
    for (int64_t j = 0; j < batch; ++j) EXPECT_EQ(all[j], static_cast<double>(want[j])) << "step " << step;
  }
}

}  // namespace
}  // namespace llamaft
