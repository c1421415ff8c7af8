// Everything `train` reads from the configuration, parsed and validated in
// one place before any device is touched: batch geometry (Megatron's global
// and micro batch), the optimizer and its schedule, the fine-tuning method
// and its base storage, FSDP, evaluation and samples, outputs. Checkpoint
// timing is CheckpointSettings (checkpoint/policy.hpp), the data section
// DataSettings (data/data_settings.hpp).
//
// Each section has its own parser, and `plan` calls the same ones for what
// it predicts (BatchSettings, FinetuneSettings, FsdpSettings, DataSettings):
// a key is read in one place. Only the checks that need what `plan` does not
// have (the world, the data, the schedule's length) wait for from_config.
#pragma once

#include <cstdint>
#include <string>

#include "config/config.hpp"
#include "data/data_settings.hpp"
#include "model/param_layout.hpp"
#include "optim/optimizer.hpp"
#include "parallel/fsdp.hpp"
#include "quant/quant.hpp"
#include "train/task_eval.hpp"
#include "train/tracker.hpp"

namespace llamaft {

// How the model's state is sharded and stored (fsdp.*, train.param_dtype):
// what `train` runs with and `plan` predicts for, read here alone.
struct FsdpSettings {
  ShardStrategy strategy = ShardStrategy::kFullShard;
  bool strategy_given = false;  // fsdp.strategy set by a file or the command line (plan then shows it alone)
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

// Rows per step: global_batch = micro_batch x ranks x accumulation
// (train.global_batch_size, train.micro_batch_size). `plan` predicts for the
// micro batch; `train` checks the global batch against its world.
struct BatchSettings {
  int64_t global_batch = 0, micro_batch = 0;

  static BatchSettings from_config(const Config& cfg);
};

// The fine-tuning method and what it trains over (finetune.method, lora.*,
// and quant.* through model/lora.hpp): what `train` runs with and `plan`
// predicts for.
struct FinetuneSettings {
  std::string method;  // full | lora | qlora
  LoraSpec lora;       // rank 0 for full
  std::string lora_init_from;  // lora.init_from: an adapter to start from
  quant::Kind base_quant = quant::Kind::kNone;  // how the frozen base is stored

  // bf16_params: train.param_dtype = bf16 (FsdpSettings), in which lora keeps its base.
  static FinetuneSettings from_config(const Config& cfg, bool bf16_params);
};

struct TrainSettings {
  // Inputs and outputs. data.path is resolved to a prepared dataset's train
  // split, and data.val_path found next to it, when the data is loaded.
  std::string model_dir, out_dir, checkpoint_dir, resume;
  DataSettings data;
  bool export_model = true, export_bf16 = false, tensorboard = false, progress = true;
  std::string export_gguf = "none", tokenizer;  // output.gguf (a GGUF outtype), model.tokenizer (its tokenizer)
  // Batch geometry: global = micro x ranks x accumulation rows per step.
  int seq_len = 0;  // data.seq_len, or a prepared dataset's own
  BatchSettings batch;
  int64_t accumulation = 0, steps = 0;
  double epochs = 0;               // train.epochs (0: train.steps is the length)
  int64_t warmup_steps = 0;        // train.warmup_steps (checked against epochs' steps)
  int64_t rows_per_epoch_steps = 0;  // ceil(rows / global_batch), once the data is loaded
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
  TrackerSettings tracker;       // output.tracker and the follower's keys
  std::string eval_task;       // lm_eval task scored at eval_every (train/task_eval)
  TaskEvalSettings eval_task_scoring;  // eval.limit and eval.max_length, as `eval --task` reads them
  // Method and parallelism.
  FinetuneSettings finetune;
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
