// Everything `train` reads from the configuration, parsed and validated in
// one place before any device is touched: batch geometry (Megatron's global
// and micro batch), the optimizer and its schedule, the fine-tuning method
// and its base storage, FSDP, evaluation and samples, outputs. Checkpoint
// timing is CheckpointSettings (checkpoint/policy.hpp).
#pragma once

#include <cstdint>
#include <string>

#include "config/config.hpp"
#include "model/param_layout.hpp"
#include "optim/optimizer.hpp"
#include "parallel/fsdp.hpp"
#include "quant/quant.hpp"

namespace llamaft {

// How the model's state is sharded and stored (fsdp.*, train.param_dtype):
// what `train` runs with and `plan` predicts for, read here alone.
struct FsdpSettings {
  ShardStrategy strategy = ShardStrategy::kFullShard;
  int shard_group_size = 0;  // hybrid_shard; 0: ranks per node
  bool activation_checkpointing = false;
  bool bf16_params = false;  // train.param_dtype = bf16
  bool bf16_reduce = false;  // fsdp.reduce_dtype = bf16

  static FsdpSettings from_config(const Config& cfg);
  // Fsdp's options for these settings over a base stored as base_quant.
  FsdpOptions options(quant::Kind base_quant) const {
    FsdpOptions o;
    o.strategy = strategy;
    o.shard_group_size = shard_group_size;
    o.base_quant = base_quant;
    o.bf16_params = bf16_params;
    o.bf16_reduce = bf16_reduce;
    return o;
  }
};

struct TrainSettings {
  // Inputs and outputs.
  std::string model_dir, data_path, data_format, val_path, out_dir, checkpoint_dir, resume;
  bool export_model = true, export_bf16 = false, tensorboard = false, progress = true;
  std::string export_gguf = "none", tokenizer;  // output.gguf (a GGUF outtype), model.tokenizer (its tokenizer)
  // Batch geometry: global = micro x ranks x accumulation rows per step.
  int seq_len = 0;
  int64_t global_batch = 0, micro_batch = 0, accumulation = 0, steps = 0;
  double epochs = 0;               // train.epochs (0: train.steps is the length)
  int64_t warmup_steps = 0;        // train.warmup_steps (checked against epochs' steps)
  int64_t rows_per_epoch_steps = 0;  // ceil(rows / global_batch), once the data is loaded
  bool shuffle = false;
  uint64_t seed = 0;
  OptimizerConfig opt;
  int64_t max_nonfinite_skips = 0;
  int64_t log_every = 1, eval_every = 0, eval_rows = 0, sample_every = 0;
  bool profile = false;  // train.profile: time the backend's ops by family (profile.json)
  int sample_max_new_tokens = 16;
  std::string sample_prompts;  // text or token ids, rendered once the model's tokenizer and vocabulary are known
  std::string sample_template = "auto";
  int64_t log_every_steps = 10;  // output.log_every_steps: progress lines when stderr is not a terminal
  double peak_tflops = 0;        // output.peak_tflops: per rank, for MFU; 0 = measured
  std::string eval_task;       // lm_eval task scored at eval_every (train/task_eval)
  int64_t eval_task_limit = 0, eval_task_max_length = 0;
  // Method and parallelism.
  std::string method;  // full | lora | qlora
  LoraSpec lora;
  std::string lora_init_from;
  quant::Kind base_quant = quant::Kind::kNone;
  FsdpSettings fsdp;
  bool allow_data_change = false;
  bool allow_lora_change = false;
  int keep_last = 2;
  double comm_timeout_s = 600;

  // Throws a user error naming the key for anything inconsistent.
  static TrainSettings from_config(const Config& cfg, int world);
  // Once the training rows are known: rows_per_epoch_steps, and with
  // train.epochs the steps (ceil(epochs x rows / global_batch)) and the
  // schedule's length. Returns the steps.
  int64_t set_steps_for_rows(int64_t rows);
};

// hybrid_shard's default shard group: the ranks of one node, or the largest
// divisor of the world below that. `plan` passes plan.ranks_per_node, `train`
// the size of MPI's shared-memory split (comm/topology.hpp's ranks_per_node()).
int default_shard_group(int world, int ranks_per_node);

}  // namespace llamaft
