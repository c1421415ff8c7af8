// Which dataset rows each rank reads at each step. Users compare runs across
// np, so the order depends only on (step, global batch, seed, shuffle):
// step s consumes global positions s*G .. (s+1)*G-1, wrapping each epoch,
// mapped through a seeded per-epoch permutation when shuffling. Rank r of W
// takes the contiguous block [r*G/W, (r+1)*G/W) of the step's rows.
#pragma once

#include <cstdint>
#include <vector>

namespace llamaft {

class DataOrder {
 public:
  DataOrder(int64_t num_rows, int64_t global_batch, bool shuffle, uint64_t seed);
  // Row indices for (step, rank of world).
  std::vector<int64_t> rows_for(int64_t step, int rank, int world) const;
  int64_t row_at(int64_t global_position) const;

 private:
  const std::vector<int64_t>& permutation(int64_t epoch) const;
  int64_t num_rows_, global_batch_;
  bool shuffle_;
  uint64_t seed_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> perm_;
};

}  // namespace llamaft
