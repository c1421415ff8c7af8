// Per-rank memory of one training step, as `llamaft plan` predicts it.
#pragma once

#include <cstddef>

#include "model/llama_config.hpp"
#include "parallel/fsdp.hpp"

namespace llamaft {

// Two phases, and the plan is the larger: loading (every shard allocated,
// plus the host staging the loader reads through: a 64 MiB window, or a
// quantized unit's region and one item, plus the 4 MiB read buffer) and the
// training step (the step's own peak, activations and gathered units included).
struct MemoryPlan {
  size_t params = 0, grads = 0, optimizer = 0, activations = 0, buffers = 0, workspace = 0;
  size_t load_scratch = 0;  // host staging while loading
  size_t load = 0, step = 0;
  size_t total = 0;  // max(load, step)
};

MemoryPlan plan_memory(const LlamaConfig& mc, ShardStrategy strategy, int world, int shard_group,
                       int micro_batch, int seq_len, bool recompute, const LoraSpec& lora = {},
                       quant::Kind base_quant = quant::Kind::kNone, bool bf16_params = false,
                       bool bf16_storage = false);

}  // namespace llamaft
