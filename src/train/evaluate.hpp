// Mean next-token loss over a dataset split, shared by `train` (validation
// every train.eval_every steps, under FSDP on every rank) and `eval` (one
// process, resident weights). Rank r of W takes the blocks of `batch_rows`
// rows r, r + W, ...; every rank runs the same number of forward passes
// (each gathers units collectively), padding with rows that carry no target.
#pragma once

#include <cstdint>

#include "comm/communicator.hpp"
#include "data/token_dataset.hpp"
#include "model/device_batch.hpp"
#include "model/llama.hpp"

namespace llamaft {

struct SplitLoss {
  double loss_sum = 0;  // summed NLL over the targets of every rank
  double tokens = 0;    // non-ignored targets
  double correct = 0;   // targets whose argmax logit is right
  double mean() const { return loss_sum / tokens; }
};

// The first `limit` rows of ds (all when limit <= 0). `world` null: one
// process. Collective over `world` otherwise.
SplitLoss evaluate_split(LlamaModel& model, UnitAccess& params, DeviceBatch& dev, const TokenDataset& ds,
                         int64_t limit, int batch_rows, Communicator* world);

}  // namespace llamaft
