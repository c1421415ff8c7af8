#include "train/settings.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "data/prepared_dataset.hpp"
#include "model/lora.hpp"

namespace llamaft {

namespace {

void check_batch_geometry(const TrainSettings& s, int world) {
  if (s.batch.global_batch % (s.batch.micro_batch * world) == 0) return;
  std::string ok_globals, ok_micros;
  for (int64_t k = 1; k <= 4; ++k) ok_globals += (k > 1 ? ", " : "") + std::to_string(k * s.batch.micro_batch * world);
  for (int64_t m = 1; m <= s.batch.global_batch / world; ++m)
    if (s.batch.global_batch % (m * world) == 0) ok_micros += (ok_micros.empty() ? "" : ", ") + std::to_string(m);
  LLAMAFT_FAIL("train.global_batch_size = ", s.batch.global_batch, " is not a multiple of micro_batch_size (",
               s.batch.micro_batch, ") x data-parallel ranks (", world, "); use global_batch_size in {", ok_globals,
               ", ...}", ok_micros.empty() ? std::string("") : " or micro_batch_size in {" + ok_micros + "}");
}

OptimizerConfig optimizer_from(const Config& cfg, int64_t steps) {
  OptimizerConfig o;
  o.lr = cfg.get_float("train.lr");
  o.min_lr = cfg.get_float("train.min_lr");
  o.weight_decay = cfg.get_float("train.weight_decay");
  o.beta1 = cfg.get_float("train.beta1");
  o.beta2 = cfg.get_float("train.beta2");
  o.eps = cfg.get_float("train.eps");
  o.max_grad_norm = cfg.get_float("train.max_grad_norm");
  o.schedule = cfg.get_string("train.lr_schedule");
  o.warmup_steps = cfg.get_int("train.warmup_steps");
  o.total_steps = steps;
  LLAMAFT_REQUIRE(o.min_lr <= o.lr, "train.min_lr (", o.min_lr, ") must not exceed train.lr (", o.lr, ")");
  LLAMAFT_REQUIRE(o.eps > 0, "train.eps = ", o.eps, ": AdamW divides by sqrt(v) + eps, so with eps = 0 every "
                  "element whose gradient is exactly zero becomes 0/0 = NaN; use a positive eps (torch's default is 1e-8)");
  LLAMAFT_REQUIRE(o.warmup_steps <= steps, "train.warmup_steps = ", o.warmup_steps, " is more than train.steps = ",
                  steps, ": the learning rate would never reach train.lr; lower warmup_steps or raise steps");
  return o;
}

void read_outputs(const Config& cfg, TrainSettings& s) {
  s.model_dir = cfg.get_string("model.path");
  s.out_dir = cfg.get_string("output.dir");
  s.checkpoint_dir = cfg.get_string("checkpoint.dir").empty() ? s.out_dir + "/checkpoints"
                                                              : cfg.get_string("checkpoint.dir");
  s.resume = cfg.get_string("checkpoint.resume");
  s.export_model = cfg.get_bool("output.export");
  s.export_bf16 = cfg.get_string("output.export_dtype") == "bfloat16";
  s.export_gguf = cfg.get_string("output.gguf");
  s.tokenizer = cfg.get_string("model.tokenizer");
  s.tensorboard = cfg.get_bool("output.tensorboard");
  s.progress = cfg.get_bool("output.progress");
  s.log_every_steps = cfg.get_int("output.log_every_steps");
  s.peak_tflops = cfg.get_float("output.peak_tflops");
  s.tracker = TrackerSettings::from_config(cfg);
}

// The run's length: train.steps, or train.epochs once the data is known.
void read_length(const Config& cfg, TrainSettings& s) {
  s.steps = cfg.get_int("train.steps");
  s.epochs = cfg.get_float("train.epochs");
  LLAMAFT_REQUIRE(s.epochs == 0 || !cfg.is_explicit("train.steps"), "train.steps = ", s.steps, " and train.epochs = ",
                  s.epochs, " both say how long to train: set one of them");
  // With epochs, the steps come from the dataset's rows (set_steps_for_rows);
  // until then the schedule's checks wait.
  s.warmup_steps = cfg.get_int("train.warmup_steps");
  if (s.epochs > 0) s.steps = std::max<int64_t>(s.steps, s.warmup_steps);
}

void read_evaluation_and_samples(const Config& cfg, TrainSettings& s) {
  s.log_every = cfg.get_int("train.log_every");
  s.profile = cfg.get_bool("train.profile");
  s.eval_every = cfg.get_int("train.eval_every");
  s.eval_rows = cfg.get_int("train.eval_rows");
  s.eval_task = cfg.get_string("train.eval_task");
  s.eval_task_scoring = TaskEvalSettings::from_config(cfg);
  LLAMAFT_REQUIRE(s.eval_task.empty() || s.eval_every > 0, "train.eval_task is scored every train.eval_every steps; "
                  "set train.eval_every");
  s.sample_every = cfg.get_int("train.sample_every");
  s.sample_max_new_tokens = static_cast<int>(cfg.get_int("train.sample_max_new_tokens"));
  s.sample_prompts = cfg.get_string("train.sample_prompts");
  s.sample_template = cfg.get_string("train.sample_template");
  LLAMAFT_REQUIRE(s.sample_every == 0 || !s.sample_prompts.empty(),
                  "train.sample_every needs train.sample_prompts (text, 'Say hi; Count to 3', or token ids, "
                  "'1,12,13;1,15')");
}

}  // namespace

FsdpSettings FsdpSettings::from_config(const Config& cfg) {
  FsdpSettings f;
  f.strategy = parse_strategy(cfg.get_string("fsdp.strategy"));
  f.strategy_given = cfg.is_explicit("fsdp.strategy");
  f.shard_group_size = static_cast<int>(cfg.get_int("fsdp.shard_group_size"));
  f.activation_checkpointing = cfg.get_bool("fsdp.activation_checkpointing");
  f.bf16_params = cfg.get_string("train.param_dtype") == "bf16";
  f.bf16_reduce = cfg.get_string("fsdp.reduce_dtype") == "bf16";
  return f;
}

BatchSettings BatchSettings::from_config(const Config& cfg) {
  BatchSettings b;
  b.global_batch = cfg.get_int("train.global_batch_size");
  b.micro_batch = cfg.get_int("train.micro_batch_size");
  return b;
}

FinetuneSettings FinetuneSettings::from_config(const Config& cfg, bool bf16_params) {
  FinetuneSettings f;
  f.method = cfg.get_string("finetune.method");
  f.lora = lora_spec_from_config(cfg, f.method);
  f.lora_init_from = cfg.get_string("lora.init_from");
  f.base_quant = base_quant_from_config(cfg, f.method, bf16_params);
  return f;
}

TrainSettings TrainSettings::from_config(const Config& cfg, int world) {
  TrainSettings s;
  read_outputs(cfg, s);
  s.data = DataSettings::from_config(cfg);
  s.batch = BatchSettings::from_config(cfg);
  read_length(cfg, s);
  s.seq_len = s.data.resolved_seq_len(false, "data.seq_len");
  check_batch_geometry(s, world);
  s.accumulation = s.batch.global_batch / (s.batch.micro_batch * world);
  s.seed = static_cast<uint64_t>(cfg.get_int("train.seed"));
  s.opt = optimizer_from(cfg, s.steps);
  s.max_nonfinite_skips = cfg.get_int("train.max_nonfinite_skips");
  read_evaluation_and_samples(cfg, s);
  s.fsdp = FsdpSettings::from_config(cfg);
  s.finetune = FinetuneSettings::from_config(cfg, s.fsdp.bf16_params);
  // eval.dtype is eval's and generate's; train (and its validation passes)
  // computes in train.param_dtype, so a different eval.dtype would be ignored.
  const std::string param_dtype = s.fsdp.bf16_params ? "bf16" : "fp32";
  LLAMAFT_REQUIRE(!cfg.is_explicit("eval.dtype") || cfg.get_string("eval.dtype") == param_dtype,
                  "eval.dtype = ", cfg.get_string("eval.dtype"), " is for eval and generate; train computes, and "
                  "evaluates its validation split, in train.param_dtype (", param_dtype, "): set train.param_dtype = ",
                  cfg.get_string("eval.dtype"), " or remove eval.dtype");
  s.allow_data_change = cfg.get_bool("checkpoint.allow_data_change");
  s.allow_lora_change = cfg.get_bool("checkpoint.allow_lora_change");
  s.keep_last = static_cast<int>(cfg.get_int("checkpoint.keep_last"));
  s.comm_timeout_s = cfg.get_float("runtime.comm_timeout_s");
  return s;
}

int default_shard_group(int world, int ranks_per_node) {
  int group = std::max(1, std::min(world, ranks_per_node));
  while (world % group) --group;  // the largest divisor of the world that fits on a node
  return group;
}

int64_t TrainSettings::set_steps_for_rows(int64_t rows) {
  LLAMAFT_REQUIRE(rows > 0, "the training data has no rows");
  rows_per_epoch_steps = (rows + batch.global_batch - 1) / batch.global_batch;
  if (epochs <= 0) return steps;
  const double exact = epochs * static_cast<double>(rows) / static_cast<double>(batch.global_batch);
  steps = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(exact - 1e-9 * exact)));
  LLAMAFT_REQUIRE(warmup_steps <= steps, "train.warmup_steps = ", warmup_steps, " is more than the ", steps,
                  " steps of train.epochs = ", epochs, " (", rows, " rows, train.global_batch_size ",
                  batch.global_batch, "): lower warmup_steps or raise epochs");
  opt.total_steps = steps;
  return steps;
}

}  // namespace llamaft
