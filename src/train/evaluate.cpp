#include "train/evaluate.hpp"

#include <algorithm>

namespace llamaft {

SplitLoss evaluate_split(LlamaModel& model, UnitAccess& params, DeviceBatch& dev, const TokenDataset& ds,
                         int64_t limit, int batch_rows, Communicator* world) {
  const int rank = world ? world->rank() : 0, nranks = world ? world->size() : 1;
  const int64_t rows = limit > 0 ? std::min<int64_t>(limit, ds.rows.size()) : static_cast<int64_t>(ds.rows.size());
  int64_t batches = 0;
  for (int64_t first = int64_t{rank} * batch_rows; first < rows; first += int64_t{batch_rows} * nranks) ++batches;
  if (world) world->all_reduce_max(&batches, 1);
  SplitLoss total;
  const TokenRow padding{{0, 0}, {-100, -100}, {}};  // contributes no tokens
  for (int64_t k = 0; k < batches; ++k) {
    const int64_t first = (k * nranks + rank) * batch_rows;
    std::vector<int64_t> mine;
    for (int64_t r = first; r < std::min(rows, first + batch_rows); ++r) mine.push_back(r);
    const HostBatch hb = mine.empty() ? make_batch(std::vector<const TokenRow*>{&padding}, 2)
                                      : make_batch(ds, mine.data(), mine.size());
    const LossSum s = model.forward_loss(dev.upload(hb), params, true);
    total.loss_sum += s.loss_sum;
    total.tokens += static_cast<double>(s.tokens);
    total.correct += static_cast<double>(s.correct);
  }
  static_assert(sizeof(SplitLoss) == 3 * sizeof(double), "SplitLoss is reduced as three doubles");
  if (world) world->all_reduce_sum(&total.loss_sum, 3);
  return total;
}

}  // namespace llamaft
