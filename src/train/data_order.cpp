#include "train/data_order.hpp"

#include <numeric>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace llamaft {

DataOrder::DataOrder(int64_t num_rows, int64_t global_batch, bool shuffle, uint64_t seed)
    : num_rows_(num_rows), global_batch_(global_batch), shuffle_(shuffle), seed_(seed) {
  LLAMAFT_CHECK(num_rows > 0 && global_batch > 0, "empty data order");
}

const std::vector<int64_t>& DataOrder::permutation(int64_t epoch) const {
  if (epoch != cached_epoch_) {
    perm_.resize(num_rows_);
    std::iota(perm_.begin(), perm_.end(), 0);
    Rng rng(seed_, 0x5eed0000ull + static_cast<uint64_t>(epoch));
    for (int64_t i = num_rows_ - 1; i > 0; --i) {  // Fisher-Yates
      const int64_t j = static_cast<int64_t>(rng.next_u64() % static_cast<uint64_t>(i + 1));
      std::swap(perm_[i], perm_[j]);
    }
    cached_epoch_ = epoch;
  }
  return perm_;
}

int64_t DataOrder::row_at(int64_t pos) const {
  const int64_t epoch = pos / num_rows_, idx = pos % num_rows_;
  return shuffle_ ? permutation(epoch)[idx] : idx;
}

std::vector<int64_t> DataOrder::rows_for(int64_t step, int rank, int world) const {
  const int64_t per_rank = global_batch_ / world;
  std::vector<int64_t> rows(per_rank);
  for (int64_t j = 0; j < per_rank; ++j) rows[j] = row_at(step * global_batch_ + rank * per_rank + j);
  return rows;
}

}  // namespace llamaft
