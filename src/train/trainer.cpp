#include "train/trainer.hpp"

#include <cblas.h>
#include <hdf5.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <iostream>
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
#include "train/memory_plan.hpp"
#include "train/mfu.hpp"

namespace llamaft {

const char* git_revision();  // generated at configure time (CMakeLists.txt)

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

Trainer::Trainer(const Config& cfg, const BackendFactory& make_backend)
    : world_(make_mpi_world_communicator()),
      lead_(world_->rank() == 0),
      settings_(TrainSettings::from_config(cfg, world_->size())),
      policy_(CheckpointSettings::from_config(cfg), settings_.steps) {
  memory_ = std::make_unique<MemoryPhases>();
  // From here every blocking MPI call is watched: a rank that stops, dies or loses its link ends the job
  // with exit 5 after runtime.comm_timeout_s instead of leaving the others spinning in a collective.
  start_collective_watchdog(settings_.comm_timeout_s, world_->rank());
  startup_.launch = std::max(0.0, process_age_seconds());
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
  policy_.install_signals();
  model_config_ = read_model_config(settings_.model_dir);
  identity_.effective_config = cfg.dump();
  load_data();
  startup_.config = lap();
  build_model(make_backend);
  startup_.allocate = lap() - startup_.load.read_s - startup_.load.other_s;
  order_ = std::make_unique<DataOrder>(static_cast<int64_t>(train_data_.rows.size()), settings_.global_batch,
                                       settings_.shuffle, settings_.seed);
  const double load_before_resume = startup_.load.read_s + startup_.load.other_s;
  resume();
  startup_.resume = lap() - (startup_.load.read_s + startup_.load.other_s - load_before_resume);
  const char* restarts = std::getenv("SLURM_RESTART_COUNT");
  restarts_ = restarts ? std::atoll(restarts) : 0;
  // The slowest rank's time in each phase (the job waits for it).
  double* const phases[] = {&startup_.launch, &startup_.config, &startup_.allocate, &startup_.load.read_s,
                            &startup_.load.other_s, &startup_.resume};
  constexpr int kPhases = sizeof(phases) / sizeof(phases[0]);
  int64_t us[kPhases + 1];  // microseconds, then the bytes read
  for (int i = 0; i < kPhases; ++i) us[i] = static_cast<int64_t>(*phases[i] * 1e6);
  us[kPhases] = static_cast<int64_t>(startup_.load.bytes_read);
  world_->all_reduce_max(us, kPhases + 1);
  for (int i = 0; i < kPhases; ++i) *phases[i] = us[i] * 1e-6;
  startup_.load.bytes_read = static_cast<uint64_t>(us[kPhases]);
  flops_per_token_ =
      train_flops_per_token(model_config_, settings_.lora.enabled(), param_counts().adapter, settings_.seq_len);
  write_run_info(cfg);
  tracker_ = std::make_unique<TrackerFollower>(cfg, settings_.out_dir, lead_);
  progress_ = std::make_unique<Progress>(lead_ && settings_.progress, state_.step, settings_.steps,
                                         settings_.log_every_steps);
  device_batch_ = std::make_unique<DeviceBatch>(*backend_);
  startup_.outputs = lap();
  if (lead_) {
    const bool quantized = settings_.base_quant != quant::Kind::kNone && settings_.lora.enabled();
    const double mb_s = startup_.load.read_s > 0 ? startup_.load.bytes_read / 1e6 / startup_.load.read_s : 0;
    std::cerr << "llamaft train: start-up " << startup_.total() << " s to the first step (slowest rank per phase): "
              << "launch " << startup_.launch << ", config and data " << startup_.config << ", allocation "
              << startup_.allocate << ", reading " << startup_.load.read_s << " (" << startup_.load.bytes_read / 1e9
              << " GB per rank at most, " << mb_s << " MB/s), " << (quantized ? "quantization and copies " : "copies ")
              << startup_.load.other_s << ", resume " << startup_.resume << ", outputs " << startup_.outputs << "\n";
  }
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

void Trainer::record_exit_status(int code) const {
  const char* path = std::getenv("LLAMAFT_EXIT_STATUS_FILE");
  if (!path || !*path) return;
  try {
    write_file_durably(path, std::to_string(code) + "\n");
  } catch (const std::exception& e) {
    std::cerr << "llamaft train: warning: cannot write LLAMAFT_EXIT_STATUS_FILE: " << e.what() << "\n";
  }
}

void Trainer::load_data() {
  // data.path may be the folder `llamaft prepare` wrote: its train split.
  std::string split;
  const std::string given = settings_.data_path;
  settings_.data_path = resolve_prepared_split(given, false, &split);
  if (lead_ && !split.empty())
    std::cerr << "llamaft train: " << given << " is a prepared dataset; training on its " << split << " split ("
              << settings_.data_path << ")\n";
  const int64_t vocab = model_config_.vocab_size;
  train_data_ = load_dataset(settings_.data_path, settings_.data_format, settings_.seq_len, vocab);
  const int64_t rows = static_cast<int64_t>(train_data_.rows.size());
  policy_.set_total_steps(settings_.set_steps_for_rows(rows));
  if (lead_)
    std::cerr << "llamaft train: " << rows << " training rows; 1 epoch = " << settings_.rows_per_epoch_steps
              << " steps of train.global_batch_size " << settings_.global_batch << "; running " << settings_.steps
              << " steps ("
              << (settings_.epochs > 0 ? str_cat("train.epochs ", settings_.epochs)
                                       : str_cat(static_cast<double>(settings_.steps * settings_.global_batch) /
                                                     static_cast<double>(rows), " epochs"))
              << ")\n";
  // Validation split: data.val_path, or DIR/val next to a prepared DIR/train.
  const std::string& path = settings_.data_path;
  if (settings_.val_path.empty() && is_prepared_dataset(path) && path.size() > 6 &&
      path.compare(path.size() - 6, 6, "/train") == 0 && is_prepared_dataset(path.substr(0, path.size() - 6) + "/val"))
    settings_.val_path = path.substr(0, path.size() - 6) + "/val";
  sample_prompts_ = build_sample_prompts(settings_.sample_prompts, settings_.sample_template, settings_.model_dir,
                                        settings_.tokenizer, model_config_);
  if (lead_ && !sample_prompts_.template_desc.empty())
    std::cerr << "llamaft train: sample prompts through template " << sample_prompts_.template_desc << "\n";
  if (settings_.eval_every > 0) {
    LLAMAFT_REQUIRE(!settings_.val_path.empty() || !settings_.eval_task.empty(), "train.eval_every needs a "
                    "validation split (set data.val_path, or prepare with --val-fraction and point data.path at "
                    "DIR/train) or train.eval_task");
    if (!settings_.val_path.empty())
      val_data_ = load_dataset(settings_.val_path, settings_.data_format, settings_.seq_len, vocab);
  }
  if (!settings_.eval_task.empty()) {
    const auto tok = load_tokenizer("", settings_.model_dir);
    LLAMAFT_REQUIRE(tok, "train.eval_task: ", settings_.model_dir, " has no tokenizer");
    const int max_length = static_cast<int>(settings_.eval_task_max_length > 0 ? settings_.eval_task_max_length
                                                                                 : model_config_.max_position_embeddings);
    task_eval_ = std::make_unique<TaskEvaluator>(load_lm_task(settings_.eval_task, settings_.eval_task_limit), *tok,
                                                 read_hf_encoding(settings_.model_dir, *tok), max_length);
  }
}

void Trainer::build_model(const BackendFactory& make_backend) {
  if (settings_.strategy == ShardStrategy::kHybridShard && settings_.shard_group_size == 0)
    settings_.shard_group_size = default_shard_group(world_->size(), ranks_per_node());
  backend_ = make_backend();
  model_options_.activation_checkpointing = settings_.activation_checkpointing;
  model_options_.lora = settings_.lora;
  model_options_.lora_dropout = static_cast<float>(settings_.lora.dropout);
  dropout_seed_ = rowmath::mix64(settings_.seed ^ 0xD50u);
  // bf16 activations and GEMMs (both backends have bf16 storage).
  model_options_.bf16_storage = settings_.bf16_params && backend_->has_bf16_storage();
  measure_peak();  // before any model memory: the GEMM scratch must not sit beside it
  model_ = std::make_unique<LlamaModel>(model_config_, *backend_, model_options_);
  // FSDP's collectives: MPI on the CPU backend, NCCL between GPUs (on the
  // backend's stream). world_ (MPI) keeps the host-side coordination.
  device_comm_ = make_device_communicator(*backend_, *world_, settings_.comm_timeout_s);
  Communicator* fsdp_comm = device_comm_ ? device_comm_.get() : world_.get();
  fsdp_ = std::make_unique<Fsdp>(model_->layout(), *backend_, *fsdp_comm, settings_.strategy,
                                 settings_.shard_group_size, settings_.base_quant, settings_.bf16_params,
                                 settings_.bf16_reduce);
  // The base always comes from the HF files under LoRA (checkpoints hold only
  // the adapters); a full fine-tune resumes everything from the checkpoint.
  const bool lora = settings_.lora.enabled();
  if (lora || settings_.resume == "none") startup_.load = load_sharded(settings_.model_dir, *fsdp_, *backend_);
  if (!lora) return;
  if (!settings_.lora_init_from.empty()) load_adapter_sharded(settings_.lora_init_from, *fsdp_, *backend_);
  else init_lora_sharded(*fsdp_, *backend_, settings_.seed);
}

void Trainer::resume() {
  checkpoints_ = std::make_unique<CheckpointManager>(*world_, settings_.checkpoint_dir, settings_.keep_last);
  identity_.model_config_json = model_config_.to_json();
  identity_.method = settings_.method;
  identity_.base_fingerprint = model_fingerprint(settings_.model_dir);
  identity_.global_batch = settings_.global_batch;
  identity_.seed = static_cast<int64_t>(settings_.seed);
  identity_.shuffle = settings_.shuffle;
  identity_.data_path = settings_.data_path;
  identity_.data_fingerprint = data_fingerprint(settings_.data_path);
  identity_.seq_len = settings_.seq_len;
  identity_.allow_data_change = settings_.allow_data_change;
  if (settings_.lora.enabled()) {
    identity_.lora_r = settings_.lora.rank;
    identity_.lora_alpha = settings_.lora.alpha;
    identity_.lora_rslora = settings_.lora.rslora;
    for (int t = 0; t < kNumLoraTargets; ++t)
      if (settings_.lora.targets[t])
        identity_.lora_targets += (identity_.lora_targets.empty() ? "" : ",") + std::string(lora_target_name(t));
    identity_.base_quant = quant::kind_name(settings_.base_quant);
  }
  identity_.allow_lora_change = settings_.allow_lora_change;
  identity_.strategy = strategy_name(settings_.strategy);
  checkpoints_->remove_stale();
  if (policy_.settings().async && policy_.periodic()) checkpoints_->reserve_staging(*fsdp_);
  if (settings_.resume == "none") return;
  std::vector<std::string> candidates;
  if (settings_.resume == "auto") {
    // Rank 0 lists; everyone tries the same folders in the same order.
    std::string joined;
    if (lead_)
      for (const auto& c : checkpoints_->auto_candidates()) joined += c + "\n";
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
      state_ = checkpoints_->load(candidates[i], *fsdp_, *backend_, identity_);
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
  if (!settings_.lora.enabled()) startup_.load = load_sharded(settings_.model_dir, *fsdp_, *backend_);  // nothing to resume
}

void Trainer::write_run_info(const Config& cfg) {
  const std::vector<std::string> hosts = all_hostnames();  // collective: before any rank-0-only work
  metrics_ = std::make_unique<MetricsWriter>(lead_, settings_.out_dir, cfg.dump(), settings_.tensorboard);
  if (!lead_) return;
  plan_ = plan_memory(model_config_, settings_.strategy, world_->size(), fsdp_->mesh().shard_size,
                      static_cast<int>(settings_.micro_batch), settings_.seq_len, settings_.activation_checkpointing,
                      settings_.lora, settings_.base_quant, settings_.bf16_params, model_options_.bf16_storage,
                      backend_->host_resident(), policy_.settings().async && policy_.periodic(),
                      settings_.bf16_reduce);
  unsigned h5maj = 0, h5min = 0, h5rel = 0;
  H5get_libversion(&h5maj, &h5min, &h5rel);
  const char* job = std::getenv("SLURM_JOB_ID");
  metrics_->run_info({
      {"llamaft_version", LLAMAFT_VERSION},
      {"git_revision", git_revision()},
      {"world_size", world_->size()},
      {"hostnames", hosts},
      {"strategy", strategy_name(settings_.strategy)},
      {"method", settings_.method},
      {"backend", backend_->name()},
      {"compute", model_options_.bf16_storage ? "bf16 (GEMMs: " + backend_->bf16_gemm_name() + ")" : "fp32"},
      {"omp_threads", omp_get_max_threads()},
      {"slurm_job_id", job ? job : ""},
      {"restarts", restarts_},
      {"parameters", {{"total", param_counts().total}, {"trainable", param_counts().trainable}}},
      {"mfu", {{"flops_per_token", flops_per_token_}, {"peak_flops", peak_flops_}, {"peak_source", peak_source_}}},
      {"libraries", {{"mpi", mpi_library_version()},
                     {"hdf5", str_cat(h5maj, ".", h5min, ".", h5rel)},
                     {"openblas", openblas_get_config()}}},
      {"startup_s", {{"launch", startup_.launch}, {"config_and_data", startup_.config},
                     {"allocation", startup_.allocate}, {"reading", startup_.load.read_s},
                     {"quantization_and_copies", startup_.load.other_s}, {"resume", startup_.resume},
                     {"bytes_read_max_rank", startup_.load.bytes_read}}},
      {"memory_plan_bytes", {{"total", plan_.total}, {"load", plan_.load}, {"step", plan_.step},
                             {"checkpoint", plan_.checkpoint}, {"checkpoint_staging", plan_.checkpoint_staging},
                             {"params", plan_.params}, {"grads", plan_.grads}, {"optimizer", plan_.optimizer},
                             {"activations", plan_.activations}, {"buffers", plan_.buffers},
                             {"load_scratch", plan_.load_scratch}}},
  });
  const quant::Kind q = settings_.base_quant;
  const bool qlora = q == quant::Kind::kNf4 || q == quant::Kind::kNf4Plain;
  const ParamCounts params = param_counts();
  std::cerr << "llamaft train: " << params.trainable << " trainable of " << params.total << " parameters ("
            << 100.0 * static_cast<double>(params.trainable) / static_cast<double>(params.total) << "%)"
            << (settings_.lora.enabled()
                    ? str_cat(" (", qlora ? "QLoRA" : "LoRA", " r=", settings_.lora.rank, " over a frozen ",
                              q == quant::Kind::kNone ? "fp32" : quant::kind_name(q), " base)")
                    : std::string(" (full fine-tuning)"))
            << ", " << world_->size() << " ranks, fsdp " << strategy_name(settings_.strategy) << " (shard "
            << fsdp_->mesh().shard_size << " x replica " << fsdp_->mesh().replica_size << "), global batch "
            << settings_.global_batch << " = " << settings_.micro_batch << " micro x " << world_->size()
            << " ranks x " << settings_.accumulation << " accumulation, seq " << settings_.seq_len << ", "
            << train_data_.rows.size() << " rows";
  if (train_data_.truncated_rows) std::cerr << " (" << train_data_.truncated_rows << " truncated)";
  if (!model_config_.unused_keys.empty()) std::cerr << "\nllamaft train: " << unused_keys_note(model_config_);
  const MemoryPlan& plan = plan_;
  std::cerr << "\nllamaft train: per-rank memory plan " << plan.total / 1048576.0 << " MiB, the largest of loading "
            << plan.load / 1048576.0 << ", the step " << plan.step / 1048576.0 << " and a checkpoint "
            << plan.checkpoint / 1048576.0;
  if (plan.checkpoint_staging)
    std::cerr << "; asynchronous saves' staging " << plan.checkpoint_staging / 1048576.0 << " is kept with the step's";
  std::cerr << " (params "
            << plan.params / 1048576.0 << ", grads " << plan.grads / 1048576.0 << ", optimizer "
            << plan.optimizer / 1048576.0 << ", activations " << plan.activations / 1048576.0 << ", buffers "
            << plan.buffers / 1048576.0 << ")\n";
  std::cerr << "llamaft train: " << backend_->name() << " computing in "
            << (model_options_.bf16_storage
                    ? "bf16 (bf16 weights and activations, fp32 master weights, gradients and AdamW; GEMMs: " +
                          backend_->bf16_gemm_name() + ")"
                    : std::string("fp32"))
            << "\n";
  std::cerr << "llamaft train: MFU counts " << flops_per_token_ / 1e9 << " GFLOP per token over a peak of "
            << peak_flops_ / 1e12 << " TFLOP/s (" << peak_source_ << ", all ranks)\n";
}

StepMetrics Trainer::step() {
  if (StepCounters* c = backend_->counters()) c->clear();  // the device's counts cover this step
  const auto t0 = Clock::now();
  const CommStats comm0 = fsdp_->comm_totals();
  const int rank = world_->rank(), nranks = world_->size();
  const int64_t step = state_.step, micro_rows = settings_.micro_batch;
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
  state_.consumed_rows = state_.step * settings_.global_batch;
  state_.consumed_tokens += static_cast<int64_t>(m.input_tokens);
  return m;
}

SplitLoss Trainer::evaluate() {
  const SplitLoss v = evaluate_split(*model_, *fsdp_, *device_batch_, val_data_, settings_.eval_rows,
                                     static_cast<int>(settings_.micro_batch), world_.get());
  fsdp_->end_backward();
  return v;
}

TaskResult Trainer::evaluate_task() {
  const TaskResult r = task_eval_->run(*model_, *fsdp_, *device_batch_, static_cast<int>(settings_.micro_batch),
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

void Trainer::end_memory_phase(const std::string& next) {
  const std::string ending = memory_->current();
  const MemoryPhases::Peak p = memory_->switch_to(next);
  MemoryPhases::Peak& kept = memory_peaks_[ending];
  kept.hwm = std::max(kept.hwm, p.hwm);
  kept.anon = std::max(kept.anon, p.anon);
  kept.file = std::max(kept.file, p.file);
  kept.shmem = std::max(kept.shmem, p.shmem);
}

void Trainer::report_save() {
  const SaveReport& r = checkpoints_->last_save();
  ++saves_;
  save_s_ += r.seconds;
  save_stall_s_ += r.stall_s;
  if (!lead_) return;
  std::cerr << "llamaft train: checkpoint " << r.path << " (" << r.bytes / 1e6 << " MB in " << r.seconds << " s";
  if (r.async) std::cerr << ", written in the background; training stopped " << r.stall_s << " s for it";
  std::cerr << ")\n";
}

template <typename F>
bool Trainer::tolerate_save_failure(F&& f) {
  try {
    f();
    return true;
  } catch (const CheckpointError& e) {
    if (!policy_.settings().warn_on_error) throw;
    if (!e.is_reported_elsewhere())
      std::cerr << where_prefix() << "llamaft train: warning: " << e.what()
                << " (checkpoint.on_error = warn: training goes on)\n";
    return false;
  }
}

void Trainer::settle_checkpoint(bool wait) {
  if (!checkpoints_->in_flight()) return;
  bool committed = false;
  // Only asynchronous periodic saves are ever in flight.
  tolerate_save_failure([&] {
    if (wait) {
      checkpoints_->finish_in_flight();
      committed = true;
    } else {
      committed = checkpoints_->poll();
    }
  });
  if (committed) report_save();
}

void Trainer::save_checkpoint() {
  settle_checkpoint(true);
  end_memory_phase("checkpoint");
  checkpoints_->save(*fsdp_, *backend_, state_, identity_);
  end_memory_phase("train");
  policy_.saved(checkpoints_->last_save().seconds);
  report_save();
}

void Trainer::periodic_checkpoint() {
  if (!policy_.settings().async) {
    settle_checkpoint(true);
    end_memory_phase("checkpoint");
    const bool ok = tolerate_save_failure([&] { checkpoints_->save(*fsdp_, *backend_, state_, identity_); });
    end_memory_phase("train");
    policy_.saved(ok ? checkpoints_->last_save().seconds : -1);
    if (ok) report_save();
    return;
  }
  settle_checkpoint(true);  // at most one in flight
  tolerate_save_failure([&] { checkpoints_->begin_async_save(*fsdp_, *backend_, state_, identity_); });
  policy_.saved();
}

int Trainer::train() {
  const auto train_start = Clock::now();
  end_memory_phase("train");
  policy_.restart_timer();
  // Walltime saves, before the first save is measured: a save writes what the load read.
  policy_.set_save_estimate(startup_.load.read_s + startup_.load.other_s);
  const nlohmann::ordered_json run_fields = {
      {"mem_params_bytes", fsdp_->param_bytes()},   {"mem_grads_bytes", fsdp_->grad_bytes()},
      {"mem_optimizer_bytes", fsdp_->optimizer_bytes()}};
  while (state_.step < settings_.steps) {
    const StepMetrics m = step();
    if (first_step_s_ < 0) first_step_s_ = m.step_s;
    if (m.step % settings_.log_every == 0 || m.step == settings_.steps) {
      nlohmann::ordered_json extra = run_fields;
      extra["mem_activations_bytes"] = model_->activation_bytes();
      extra["mem_buffers_bytes"] = fsdp_->peak_buffer_bytes();
      extra["mem_peak_bytes"] = backend_->peak_bytes();
      extra["world_size"] = world_->size();
      extra["strategy"] = strategy_name(settings_.strategy);
      extra["restarts"] = restarts_;
      const nlohmann::ordered_json progress = progress_fields(m);
      for (const auto& [k, v] : progress.items()) extra[k] = v;
      if (const StepCounters* c = backend_->counters()) extra["device"] = step_counters_json(*c);
      metrics_->step(m, extra);
    }
    report_progress(m);
    if (settings_.eval_every > 0 && (m.step % settings_.eval_every == 0 || m.step == settings_.steps)) {
      const SplitLoss v = val_data_.rows.empty() ? SplitLoss{} : evaluate();
      if (lead_ && v.tokens > 0) {
        metrics_->validation(m.step, v.mean(), v.correct / v.tokens, static_cast<int64_t>(v.tokens));
        std::cerr << "llamaft train: step " << m.step << " validation loss " << v.mean() << "\n";
      }
      if (task_eval_) {
        const TaskResult t = evaluate_task();
        metrics_->task(m.step, t.summary());
        if (lead_) std::cerr << "llamaft train: step " << m.step << " task " << t.summary().dump() << "\n";
      }
    }
    if (settings_.sample_every > 0 && m.step % settings_.sample_every == 0) {
      const auto samples = sample();
      for (size_t i = 0; i < samples.size(); ++i) {
        const auto& tok = sample_prompts_.tokenizer;
        metrics_->sample(m.step, i, sample_prompts_.ids[i], samples[i], sample_prompts_.texts[i],
                         tok ? decode_sample(*tok, samples[i]) : std::string());
      }
    }
    const BoundaryDecision d = policy_.at_step_boundary(state_.step, *world_);
    settle_checkpoint(false);
    if (!d.save) continue;
    if (d.signal) policy_.arm_grace();
    if (!d.signal && !d.stop_after && !d.walltime) {
      periodic_checkpoint();
      continue;
    }
    // A signal or exit_after_steps: wait for a save in flight, then save
    // this step synchronously unless that one was it.
    const auto t_wait = Clock::now();
    const bool was_in_flight = checkpoints_->in_flight();
    settle_checkpoint(true);
    const double waited = seconds_since(t_wait);
    if (checkpoints_->last_save().step != state_.step || saves_ == 0) save_checkpoint();
    if (lead_ && was_in_flight)
      std::cerr << "llamaft train: waited " << waited << " s for the save in flight, then saved step " << state_.step
                << " in " << checkpoints_->last_save().seconds << " s\n";
    // SIGINT alone (max-reduced: any other signal on any rank wins) is a person's Ctrl-C.
    const int code = d.walltime ? kExitRequeue : !d.signal ? kExitOk : d.signal == SIGINT ? kExitInterrupted : kExitRequeue;
    if (lead_ && d.walltime)
      std::cerr << "llamaft train: the job's time limit is " << d.time_left_s << " s away, less than a save, a step and "
                << "the margin (" << d.needed_s << " s); checkpointed at step " << state_.step << ", exiting " << code
                << " (requeue me)\n";
    if (lead_ && d.signal == SIGINT)
      std::cerr << "llamaft train: interrupted; checkpointed at step " << state_.step << ", exiting " << code << "\n";
    else if (lead_ && d.signal)
      std::cerr << "llamaft train: signal " << d.signal << " received; checkpointed at step " << state_.step
                << ", exiting " << code << " (requeue me)\n";
    if (lead_ && !d.signal && !d.walltime)
      std::cerr << "llamaft train: train.exit_after_steps reached at step " << state_.step << "\n";
    if (lead_ && (d.signal || d.walltime)) record_exit_status(code);
    progress_->finish();
    return code;
  }
  progress_->finish();
  settle_checkpoint(true);
  if (policy_.settings().at_end && state_.step > 0 && (saves_ == 0 || checkpoints_->last_save().step != state_.step))
    save_checkpoint();
  const double train_s = seconds_since(train_start);
  if (settings_.export_model) {
    end_memory_phase("export");
    export_result();
  }
  write_summary(train_s);
  tracker_->finish();
  // output.gguf: rank 0 alone, after the last collective (a long quantization
  // must not hold the other ranks in one past runtime.comm_timeout_s).
  if (lead_) write_training_gguf(settings_);
  return kExitOk;
}

void Trainer::write_summary(double train_s) {
  // Every rank's peak resident memory per phase (VmHWM, reset at each phase
  // change) and the largest RssAnon / RssFile / RssShmem its sampler saw.
  end_memory_phase("summary");
  const char* kPhases[] = {"startup", "train", "checkpoint", "export"};
  constexpr int kN = 4;
  int64_t peaks[5 * kN];
  for (int i = 0; i < kN; ++i) {
    const MemoryPhases::Peak p = memory_peaks_.count(kPhases[i]) ? memory_peaks_[kPhases[i]] : MemoryPhases::Peak{};
    const int64_t v[5] = {p.hwm, -p.hwm, p.anon, p.file, p.shmem};
    std::copy(v, v + 5, peaks + 5 * i);
  }
  world_->all_reduce_max(peaks, 5 * kN);
  nlohmann::ordered_json phases = nlohmann::ordered_json::object();
  int64_t max_peak = 0, min_peak = 0;
  for (int i = 0; i < kN; ++i) {
    const int64_t* p = peaks + 5 * i;
    if (p[0] == 0) continue;  // not reached (no checkpoint or export)
    max_peak = std::max(max_peak, p[0]);
    min_peak = std::max(min_peak, -p[1]);
    phases[kPhases[i]] = {{"peak_rss_bytes_max_rank", p[0]}, {"peak_rss_bytes_min_rank", -p[1]},
                          {"plan_ratio_max_rank", plan_.total ? static_cast<double>(p[0]) / plan_.total : 0.0},
                          {"rss_anon_bytes_max_rank", p[2]}, {"rss_file_bytes_max_rank", p[3]},
                          {"rss_shmem_bytes_max_rank", p[4]}};
  }
  metrics_->summary({
      {"world_size", world_->size()},
      {"strategy", strategy_name(settings_.strategy)},
      {"steps", settings_.steps},
      {"train_s", train_s},
      {"first_step_s", first_step_s_},
      {"checkpoints", saves_},
      {"checkpoint_save_s", save_s_},
      {"checkpoint_stall_s", save_stall_s_},
      {"startup_s", startup_.total()},
      {"peak_rss_bytes_max_rank", max_peak},
      {"peak_rss_bytes_min_rank", min_peak},
      {"memory_plan_bytes", plan_.total},
      {"peak_rss_plan_ratio_max_rank", plan_.total ? static_cast<double>(max_peak) / plan_.total : 0.0},
      {"memory_phases", phases},
      {"peak_backend_bytes_rank0", backend_->peak_bytes()},
  });
}

void Trainer::export_result() {
  if (settings_.lora.enabled()) {
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
