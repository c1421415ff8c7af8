#include "train/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include "comm/registry.hpp"
#include "comm/topology.hpp"
#include "comm/watchdog.hpp"
#include "core/error.hpp"
#include "core/fault_points.hpp"
#include "core/util.hpp"
#include "data/prepared_dataset.hpp"
#include "data/token_ids.hpp"
#include "data/tokenizer.hpp"
#include "model/decode.hpp"
#include "model/hf_model.hpp"
#include "model/lora.hpp"
#include "optim/optimizer.hpp"
#include "parallel/fsdp_io.hpp"
#include "train/gguf_hook.hpp"

namespace llamaft {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// What a checkpoint of this run must agree on (all but the effective config).
void describe_run(const TrainSettings& s, const LlamaConfig& mc, RunIdentity& id) {
  id.model_config_json = mc.to_json();
  id.method = s.finetune.method;
  id.base_fingerprint = model_fingerprint(s.model_dir);
  id.global_batch = s.batch.global_batch;
  id.seed = static_cast<int64_t>(s.seed);
  id.shuffle = s.data.shuffle;
  id.data_path = s.data.path;
  id.data_fingerprint = data_fingerprint(s.data.path);
  id.seq_len = s.seq_len;
  id.allow_data_change = s.allow_data_change;
  if (s.finetune.lora.enabled()) {
    id.lora_r = s.finetune.lora.rank;
    id.lora_alpha = s.finetune.lora.alpha;
    id.lora_rslora = s.finetune.lora.rslora;
    for (int t = 0; t < kNumLoraTargets; ++t)
      if (s.finetune.lora.targets[t])
        id.lora_targets += (id.lora_targets.empty() ? "" : ",") + std::string(lora_target_name(t));
    id.base_quant = quant::kind_name(s.finetune.base_quant);
  }
  id.allow_lora_change = s.allow_lora_change;
  id.strategy = strategy_name(s.fsdp.strategy);
}

}  // namespace

Trainer::Trainer(const Config& cfg, const BackendFactory& make_backend)
    : world_(make_mpi_world_comm()),
      lead_(world_->rank() == 0),
      settings_(TrainSettings::from_config(cfg, world_->size())),
      checkpoints_(std::make_unique<Checkpointer>(CheckpointSettings::from_config(cfg), settings_.steps, *world_,
                                                  settings_.checkpoint_dir, settings_.keep_last)),
      report_(std::make_unique<RunReport>(lead_)) {
  checkpoints_->on_phase([this](const std::string& phase) { report_->memory_phase(phase); });
  Startup& startup = report_->startup();
  // From here every blocking MPI call is watched: a rank that stops, dies or loses its link ends the job
  // with exit 5 after runtime.comm_timeout_s instead of leaving the others spinning in a collective.
  start_collective_watchdog(settings_.comm_timeout_s, world_->rank());
  startup.launch = std::max(0.0, process_age_seconds());
  auto t_phase = Clock::now();
  auto lap = [&t_phase] {
    const double s = seconds_since(t_phase);
    t_phase = Clock::now();
    return s;
  };
  if (fault::armed(fault::Point::kFailRank) == world_->rank())
    LLAMAFT_FAIL("injected failure on this rank (fault point fail_rank)");
  lock_folders();
  // Before the (possibly minutes-long) load: a preemption signal that arrives while the model and data are
  // read is kept, and honoured at the first step boundary, instead of killing the rank with no checkpoint.
  checkpoints_->install_signals();
  model_config_ = read_model_config(settings_.model_dir);
  identity_.effective_config = cfg.dump();
  load_data();
  startup.config = lap();
  build_model(make_backend);
  startup.allocate = lap() - startup.load.read_s - startup.load.other_s;
  order_ = std::make_unique<DataOrder>(static_cast<int64_t>(train_data_.rows.size()), settings_.batch.global_batch,
                                       settings_.data.shuffle, settings_.seed);
  const double load_before_resume = startup.load.read_s + startup.load.other_s;
  resume();
  startup.resume = lap() - (startup.load.read_s + startup.load.other_s - load_before_resume);
  const char* restarts = std::getenv("SLURM_RESTART_COUNT");
  device_batch_ = std::make_unique<DeviceBatch>(*backend_);
  report_->open(cfg, {settings_, model_config_, model_options_, *world_, *backend_, *fsdp_, *model_, train_data_,
                      *checkpoints_},
                restarts ? std::atoll(restarts) : 0, state_.step);
  startup.outputs = lap();
  report_->print_startup();
}

Trainer::~Trainer() { stop_collective_watchdog(); }

void Trainer::validate(const Config& cfg, int world_size) {
  const TrainSettings settings = TrainSettings::from_config(cfg, world_size);
  (void)CheckpointSettings::from_config(cfg);
  (void)read_model_config(settings.model_dir);
  check_training_gguf(settings);  // output.gguf: refused now, not after training
}

void Trainer::lock_folders() {
  std::string error;
  if (lead_) {
    try {
      locks_.push_back(RunLock::acquire(settings_.out_dir, "output.dir"));
      std::error_code ec;
      if (!std::filesystem::equivalent(settings_.out_dir, settings_.checkpoint_dir, ec))
        locks_.push_back(RunLock::acquire(settings_.checkpoint_dir, "checkpoint.dir"));
    } catch (const Error& e) {
      error = e.what();
      locks_.clear();
    }
  }
  int64_t n = static_cast<int64_t>(error.size());
  world_->broadcast(&n, sizeof(n), 0);
  error.resize(static_cast<size_t>(n));
  world_->broadcast(error.data(), error.size(), 0);
  if (!error.empty()) throw Error::agreed(error, kExitUserError, lead_);
  if (lead_ && std::getenv("LLAMAFT_EXIT_STATUS_FILE")) std::remove(std::getenv("LLAMAFT_EXIT_STATUS_FILE"));
}

void Trainer::load_data() {
  // data.path may be the folder `llamaft prepare` wrote: its train split.
  std::string split;
  const std::string given = settings_.data.path;
  settings_.data.path = resolve_prepared_split(given, false, &split);
  if (lead_ && !split.empty())
    std::cerr << "llamaft train: " << given << " is a prepared dataset; training on its " << split << " split ("
              << settings_.data.path << ")\n";
  const int64_t vocab = model_config_.vocab_size;
  train_data_ = load_dataset(settings_.data.path, settings_.data.format, settings_.seq_len, vocab);
  const int64_t rows = static_cast<int64_t>(train_data_.rows.size());
  checkpoints_->set_total_steps(settings_.set_steps_for_rows(rows));
  if (lead_)
    std::cerr << "llamaft train: " << rows << " training rows; 1 epoch = " << settings_.rows_per_epoch_steps
              << " steps of train.global_batch_size " << settings_.batch.global_batch << "; running " << settings_.steps
              << " steps ("
              << (settings_.epochs > 0 ? str_cat("train.epochs ", settings_.epochs)
                                       : str_cat(static_cast<double>(settings_.steps * settings_.batch.global_batch) /
                                                     static_cast<double>(rows), " epochs"))
              << ")\n";
  // Validation split: data.val_path, or DIR/val next to a prepared DIR/train.
  const std::string& path = settings_.data.path;
  if (settings_.data.val_path.empty() && is_prepared_dataset(path) && path.size() > 6 &&
      path.compare(path.size() - 6, 6, "/train") == 0 && is_prepared_dataset(path.substr(0, path.size() - 6) + "/val"))
    settings_.data.val_path = path.substr(0, path.size() - 6) + "/val";
  sample_prompts_ = build_sample_prompts(settings_.sample_prompts, settings_.sample_template, settings_.model_dir,
                                        settings_.tokenizer, model_config_);
  if (lead_ && !sample_prompts_.template_desc.empty())
    std::cerr << "llamaft train: sample prompts through template " << sample_prompts_.template_desc << "\n";
  if (settings_.eval_every > 0) {
    LLAMAFT_REQUIRE(!settings_.data.val_path.empty() || !settings_.eval_task.empty(), "train.eval_every needs a "
                    "validation split (set data.val_path, or prepare with --val-fraction and point data.path at "
                    "DIR/train) or train.eval_task");
    if (!settings_.data.val_path.empty())
      val_data_ = load_dataset(settings_.data.val_path, settings_.data.format, settings_.seq_len, vocab);
  }
  if (!settings_.eval_task.empty()) {
    const auto tok = load_tokenizer("", settings_.model_dir);
    LLAMAFT_REQUIRE(tok, "train.eval_task: ", settings_.model_dir, " has no tokenizer");
    const TaskEvalSettings& scoring = settings_.eval_task_scoring;
    task_eval_ = std::make_unique<TaskEvaluator>(load_lm_task(settings_.eval_task, scoring.limit), *tok,
                                                 read_hf_encoding(settings_.model_dir, *tok),
                                                 scoring.max_length_for(model_config_));
  }
}

void Trainer::build_model(const BackendFactory& make_backend) {
  if (settings_.fsdp.strategy == ShardStrategy::kHybridShard && settings_.fsdp.shard_group_size == 0)
    settings_.fsdp.shard_group_size = default_shard_group(world_->size(), ranks_per_node());
  backend_ = make_backend();
  if (settings_.profile) {
    LLAMAFT_REQUIRE(backend_->host_resident(), "train.profile times the ops of the cpu backend, which computes "
                    "synchronously; the ", backend_->name(), " backend counts each step's ops (bytes, FLOPs, "
                    "launches) in metrics.jsonl's \"device\" field without it");
    backend_ = make_profiling_backend(std::move(backend_));
  }
  model_options_.activation_checkpointing = settings_.fsdp.activation_checkpointing;
  model_options_.lora = settings_.finetune.lora;
  model_options_.lora_dropout = static_cast<float>(settings_.finetune.lora.dropout);
  dropout_seed_ = rowmath::mix64(settings_.seed ^ 0xD50u);
  // bf16 activations and GEMMs (both backends have bf16 storage).
  model_options_.bf16_storage = settings_.fsdp.bf16_params && backend_->has_bf16_storage();
  // Before any model memory: the GEMM scratch must not sit beside it.
  report_->measure_peak(settings_, *backend_, *world_, model_options_.bf16_storage);
  model_ = std::make_unique<LlamaModel>(model_config_, *backend_, model_options_);
  // FSDP's collectives: MPI on the CPU backend, NCCL between GPUs (on the
  // backend's stream). world_ (MPI) keeps the host-side coordination.
  device_comm_ = make_device_communicator(*backend_, *world_, settings_.comm_timeout_s);
  Communicator* fsdp_comm = device_comm_ ? device_comm_.get() : world_.get();
  const FsdpSettings& f = settings_.fsdp;
  fsdp_ = std::make_unique<Fsdp>(model_->layout(), *backend_, *fsdp_comm, f.options(settings_.finetune.base_quant));
  // The base always comes from the HF files under LoRA (checkpoints hold only
  // the adapters); a full fine-tune resumes everything from the checkpoint.
  const bool lora = settings_.finetune.lora.enabled();
  if (lora || settings_.resume == "none")
    report_->startup().load = load_sharded(settings_.model_dir, *fsdp_, *backend_);
  if (!lora) return;
  if (!settings_.finetune.lora_init_from.empty())
    load_adapter_sharded(settings_.finetune.lora_init_from, *fsdp_, *backend_);
  else init_lora_sharded(*fsdp_, *backend_, settings_.seed);
}

void Trainer::resume() {
  CheckpointManager& checkpoints = checkpoints_->manager();
  describe_run(settings_, model_config_, identity_);
  checkpoints.remove_stale();
  if (checkpoints_->stages_async()) checkpoints.reserve_staging(*fsdp_);
  if (settings_.resume == "none") return;
  std::vector<std::string> candidates;
  if (settings_.resume == "auto") {
    // Rank 0 lists; everyone tries the same folders in the same order.
    std::string joined;
    if (lead_)
      for (const auto& c : checkpoints.auto_candidates()) joined += c + "\n";
    int64_t n = static_cast<int64_t>(joined.size());
    world_->broadcast(&n, sizeof(n), 0);
    joined.resize(static_cast<size_t>(n));
    world_->broadcast(joined.data(), joined.size(), 0);
    std::stringstream ss(joined);
    for (std::string line; std::getline(ss, line);) candidates.push_back(line);
  } else {
    candidates.push_back(settings_.resume);
  }
  for (size_t i = 0; i < candidates.size(); ++i) {
    try {
      const auto t_load = Clock::now();
      state_ = checkpoints.load(candidates[i], *fsdp_, *backend_, identity_);
      if (lead_)
        std::cerr << "llamaft train: resumed from " << candidates[i] << " at step " << state_.step << " in "
                  << seconds_since(t_load) << " s\n";
      return;
    } catch (const CheckpointError& e) {
      if (settings_.resume != "auto") throw;  // an explicit path must be usable
      if (lead_)
        std::cerr << "llamaft train: skipping unusable checkpoint: " << e.what()
                  << (i + 1 < candidates.size() ? "; falling back to the previous one\n" : "\n");
    }
  }
  if (!candidates.empty())
    throw CheckpointError(str_cat("none of the ", candidates.size(), " checkpoints in '", settings_.checkpoint_dir,
                                  "' is usable; fix or remove them, or set checkpoint.resume = none"));
  if (!settings_.finetune.lora.enabled())  // nothing to resume
    report_->startup().load = load_sharded(settings_.model_dir, *fsdp_, *backend_);
}

StepMetrics Trainer::step() {
  if (StepCounters* c = backend_->counters()) c->clear();  // the device's counts cover this step
  const auto t0 = Clock::now();
  const CommStats comm0 = fsdp_->comm_totals();
  const int rank = world_->rank(), nranks = world_->size();
  const int64_t step = state_.step, micro_rows = settings_.batch.micro_batch;
  const std::vector<int64_t> my_rows = order_->rows_for(step, rank, nranks);
  StepMetrics m;
  m.step = step + 1;
  std::vector<HostBatch> micro;
  for (int64_t k = 0; k < settings_.accumulation; ++k) {
    const int64_t* rows = my_rows.data() + k * micro_rows;
    micro.push_back(make_batch(train_data_, rows, static_cast<size_t>(micro_rows)));
    for (int64_t j = 0; j < micro_rows; ++j) {
      m.input_tokens += static_cast<double>(train_data_.rows[rows[j]].input_ids.size());
      // Each sequence's dropout masks depend on (seed, step, dataset row) only:
      // the same at any rank count, accumulation or activation checkpointing.
      if (model_options_.lora_dropout > 0)
        micro.back().dropout_keys.push_back(rowmath::mix64(
            dropout_seed_ ^ rowmath::mix64(static_cast<uint64_t>(step) << 32 ^ static_cast<uint64_t>(rows[j]))));
    }
    m.target_tokens += static_cast<double>(micro.back().target_tokens);
  }
  static_assert(offsetof(StepMetrics, target_tokens) == offsetof(StepMetrics, input_tokens) + sizeof(double),
                "the token counts are reduced as two adjacent doubles");
  world_->all_reduce_sum(&m.input_tokens, 2);
  LLAMAFT_REQUIRE(m.target_tokens > 0, "step ", m.step, ": the global batch has no target tokens (all labels -100?)");

  fsdp_->zero_grad_shards();
  double loss_sum = 0;
  for (const auto& hb : micro) {
    loss_sum += model_->forward_backward(device_batch_->upload(hb), *fsdp_,
                                         static_cast<float>(1.0 / m.target_tokens)).loss_sum;
    fsdp_->end_backward();
  }
  const auto nan_from = fault::armed(fault::Point::kNanLossFrom);
  if (nan_from && m.step >= *nan_from && rank == nranks - 1) loss_sum = std::nan("");
  world_->all_reduce_sum(&loss_sum, 1);
  m.loss = loss_sum / m.target_tokens;
  StepResult r;
  if (std::isfinite(m.loss)) {
    checkpoints_->before_update();  // a save in flight may still be copying the shards
    r = adamw_step(*fsdp_, *backend_, settings_.opt, step);
    // A finite gradient can still give non-finite weights (an overflowing
    // update); those cannot be skipped, since the shards already hold them.
    if (r.finite && !r.weights_finite)
      throw Error(str_cat("step ", m.step, ": the optimizer produced non-finite weights (grad norm ", r.grad_norm,
                          ", lr ", r.lr, "); stopping without saving or exporting them. The last committed "
                          "checkpoint is intact; check train.eps, train.lr and the data"),
                  kExitDiverged);
  } else {
    r.finite = false;
    r.lr = learning_rate(settings_.opt, step);
  }
  m.lr = r.lr;
  m.grad_norm = r.grad_norm;
  m.skipped = !r.finite;
  if (m.skipped) {
    ++state_.skips_in_row;
    if (lead_) std::cerr << "llamaft train: step " << m.step << ": non-finite loss or gradient norm; update skipped\n";
    if (state_.skips_in_row > settings_.max_nonfinite_skips)
      throw Error(str_cat("training diverged: ", state_.skips_in_row, " consecutive steps with NaN/inf loss or "
                          "gradients (train.max_nonfinite_skips = ", settings_.max_nonfinite_skips,
                          "); lower train.lr or check the data"),
                  kExitDiverged);
  } else {
    state_.skips_in_row = 0;
  }
  m.step_s = seconds_since(t0);
  const CommStats comm1 = fsdp_->comm_totals();
  m.comm_wait_s = comm1.wait_seconds - comm0.wait_seconds;
  m.all_gather_bytes = comm1.all_gather_bytes - comm0.all_gather_bytes;
  m.reduce_scatter_bytes = comm1.reduce_scatter_bytes - comm0.reduce_scatter_bytes;
  m.all_reduce_bytes = comm1.all_reduce_bytes - comm0.all_reduce_bytes;
  state_.step = m.step;
  state_.consumed_rows = state_.step * settings_.batch.global_batch;
  state_.consumed_tokens += static_cast<int64_t>(m.input_tokens);
  return m;
}

SplitLoss Trainer::evaluate() {
  const SplitLoss v = evaluate_split(*model_, *fsdp_, *device_batch_, val_data_, settings_.eval_rows,
                                     static_cast<int>(settings_.batch.micro_batch), world_.get());
  fsdp_->end_backward();
  return v;
}

TaskResult Trainer::evaluate_task() {
  const TaskResult r = task_eval_->run(*model_, *fsdp_, *device_batch_, static_cast<int>(settings_.batch.micro_batch),
                                       world_.get());
  fsdp_->end_backward();
  return r;
}

std::vector<std::vector<int32_t>> Trainer::sample() {
  // Every rank decodes in lockstep (each token gathers units); rank 0's token
  // is broadcast so the ranks can never disagree.
  const TokenPicker greedy_agreed = [&](const std::vector<float>& logits) {
    int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    world_->broadcast(&next, sizeof(next), 0);
    return next;
  };
  std::vector<std::vector<int32_t>> out;
  for (const auto& prompt : sample_prompts_.ids) {
    out.push_back(decode_tokens(*model_, *fsdp_, prompt, settings_.sample_max_new_tokens, greedy_agreed,
                                model_config_.eos_token_ids).ids);
    fsdp_->end_backward();
  }
  return out;
}

int Trainer::train() {
  const auto train_start = Clock::now();
  report_->memory_phase("train");
  // Walltime saves, before the first save is measured: a save writes what the load read.
  checkpoints_->start(report_->startup().load.read_s + report_->startup().load.other_s);
  const SaveSource save{*fsdp_, *backend_, identity_};
  while (state_.step < settings_.steps) {
    const StepMetrics m = step();
    report_->step(m, state_.consumed_rows);
    if (settings_.eval_every > 0 && (m.step % settings_.eval_every == 0 || m.step == settings_.steps)) {
      report_->validation(m.step, val_data_.rows.empty() ? SplitLoss{} : evaluate());
      if (task_eval_) report_->task(m.step, evaluate_task());
    }
    if (settings_.sample_every > 0 && m.step % settings_.sample_every == 0)
      report_->samples(m.step, sample_prompts_, sample());
    if (const std::optional<int> code = checkpoints_->at_step_boundary(state_, save)) {
      report_->finish_progress();
      return *code;
    }
  }
  report_->finish_progress();
  checkpoints_->at_end(state_, save);
  const double train_s = seconds_since(train_start);
  if (settings_.export_model) {
    report_->memory_phase("export");
    export_result();
  }
  report_->summary(train_s);
  report_->finish_trackers();
  // output.gguf: rank 0 alone, after the last collective (a long quantization
  // must not hold the other ranks in one past runtime.comm_timeout_s).
  if (lead_) write_training_gguf(settings_);
  return kExitOk;
}

void Trainer::export_result() {
  if (settings_.finetune.lora.enabled()) {
    const std::string dir = settings_.out_dir + "/adapter";
    export_adapter_sharded(dir, settings_.model_dir, *fsdp_, *backend_);
    if (lead_) std::cerr << "llamaft train: exported the PEFT adapter to " << dir << "\n";
  } else {
    const std::string dir = settings_.out_dir + "/model";
    export_sharded(dir, model_config_, *fsdp_, *backend_, settings_.export_bf16, settings_.model_dir);
    if (lead_) std::cerr << "llamaft train: exported the model to " << dir << "\n";
  }
}

}  // namespace llamaft
