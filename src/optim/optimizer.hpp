// AdamW with exactly torch.optim.AdamW's semantics, gradient clipping with
// exactly torch.nn.utils.clip_grad_norm_'s, and the learning-rate schedules,
// all applied to sharded state through OptimizerShards (which Fsdp
// implements). The element math is rowmath::adamw_elem, shared with the CUDA
// kernel.
#pragma once

#include <cstdint>
#include <string>

#include "backend/backend.hpp"
#include "optim/optimizer_shards.hpp"

namespace llamaft {

struct OptimizerConfig {
  double lr = 1e-4, weight_decay = 0.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double max_grad_norm = 1.0;  // <= 0 disables clipping
  std::string schedule = "constant";  // constant | linear | cosine
  int64_t warmup_steps = 0, total_steps = 1;
  double min_lr = 0.0;
};

// Learning rate for optimizer step `step` (0-based), as HF/torchtune's
// LambdaLR schedules: warmup multiplies by step / warmup_steps (so the very
// first step of a warmup runs at lr 0), then linear or cosine decay from lr to
// min_lr over the remaining steps.
double learning_rate(const OptimizerConfig& c, int64_t step);

struct StepResult {
  double grad_norm = 0;   // global L2 norm before clipping
  double lr = 0;
  bool finite = true;     // false: the update was skipped
  bool weights_finite = true;  // false: the update made a weight NaN/inf
};

// Global norm over all shards (sum over the shard communicator), clipping,
// then AdamW on every shard. `step` is 0-based; bias correction uses step+1.
// An Fsdp converts to OptimizerShards&: adamw_step(fsdp, be, c, step).
StepResult adamw_step(OptimizerShards& shards, Backend& be, const OptimizerConfig& c, int64_t step);

}  // namespace llamaft
