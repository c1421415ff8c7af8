// Per-rank memory of one training step, as `llamaft plan` predicts it.
#pragma once

#include <cstddef>

#include "model/llama_config.hpp"
#include "parallel/fsdp.hpp"

namespace llamaft {

// Three phases, and the plan is the largest: loading (every shard
// allocated, plus the host staging the loader reads through: a 64 MiB
// window, or a quantized unit's region and one item, plus the 4 MiB read
// buffer), the training step (the step's own peak, activations and gathered
// units included) and, where the backend's memory is host memory, a
// checkpoint save (the step's peak less its activations, since the gathered
// units' buffers stay pooled). Saves write straight from the shards; with
// asynchronous periodic saves (checkpoint.async) the host staging copy of
// this rank's slices is added to the step and the save, since it is kept
// from the first save on. On a device backend the staging is host memory,
// outside this plan.
struct MemoryPlan {
  size_t params = 0, grads = 0, optimizer = 0, activations = 0, buffers = 0, workspace = 0;
  size_t load_scratch = 0;     // host staging while loading
  size_t checkpoint_staging = 0;  // asynchronous saves' host copy (host backends)
  size_t load = 0, step = 0, checkpoint = 0;
  size_t total = 0;  // max(load, step + checkpoint_staging, checkpoint)
};

// What the plan needs to know of a run besides the model's shape.
struct PlanInputs {
  FsdpOptions fsdp;  // strategy, shard group (the shard size itself), quantized base, bf16 params/reduce
  int world = 1;
  int micro_batch = 1;
  int seq_len = 0;
  bool activation_checkpointing = false;
  LoraSpec lora;
  bool bf16_storage = false;      // activations and gathered weights in bf16
  bool host_resident = true;      // the backend's memory is host memory
  bool async_checkpoint = false;  // checkpoint.async: the host staging copy
};

MemoryPlan plan_memory(const LlamaConfig& mc, const PlanInputs& in);

}  // namespace llamaft
