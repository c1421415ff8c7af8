// Per-rank memory of one training step, as `llamaft plan` predicts it.
#pragma once

#include <cstddef>

#include "model/llama_config.hpp"
#include "parallel/fsdp.hpp"

namespace llamaft {

struct MemoryPlan {
  size_t params = 0, grads = 0, optimizer = 0, activations = 0, buffers = 0, workspace = 0, total = 0;
};

MemoryPlan plan_memory(const LlamaConfig& mc, ShardStrategy strategy, int world, int shard_group,
                       int micro_batch, int seq_len, bool recompute, const LoraSpec& lora = {},
                       quant::Kind base_quant = quant::Kind::kNone, bool bf16_params = false,
                       bool bf16_storage = false);

}  // namespace llamaft
