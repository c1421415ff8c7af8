// What a training run reports (run_report.hpp).
#include "train/run_report.hpp"

#include <cblas.h>
#include <hdf5.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "core/error.hpp"
#include "train/mfu.hpp"

namespace llamaft {

const char* git_revision();  // generated at configure time (CMakeLists.txt)

RunReport::RunReport(bool lead) : lead_(lead), memory_(std::make_unique<MemoryPhases>()) {}

void RunReport::measure_peak(const TrainSettings& s, Backend& be, Communicator& world, bool bf16) {
  if (s.peak_tflops > 0) {
    peak_flops_ = s.peak_tflops * 1e12 * world.size();
    peak_source_ = "output.peak_tflops";
    return;
  }
  // Every rank at once: ranks that share a node's cores share its peak.
  const GemmPeak p = measure_gemm_peak(be, bf16);
  double v[2] = {p.flops_per_s, p.seconds};
  world.all_reduce_sum(v, 2);
  peak_flops_ = v[0];
  peak_source_ = str_cat(bf16 ? "bf16" : "fp32", " GEMM ", p.size, "^3 measured at start-up (", v[1] / world.size(),
                         " s)");
}

void RunReport::open(const Config& cfg, const RunView& run, int64_t restarts, int64_t first_step) {
  run_ = std::make_unique<RunView>(run);
  restarts_ = restarts;
  agree_startup();
  const TrainSettings& s = run.settings;
  flops_per_token_ =
      train_flops_per_token(run.model_config, s.finetune.lora.enabled(), param_counts().adapter, s.seq_len);
  write_run_info(cfg);
  tracker_ = std::make_unique<TrackerFollower>(s.tracker, s.out_dir, lead_);
  progress_ = std::make_unique<Progress>(lead_ && s.progress, first_step, s.steps, s.log_every_steps);
}

// The slowest rank's time in each phase (the job waits for it).
void RunReport::agree_startup() {
  double* const phases[] = {&startup_.launch, &startup_.config, &startup_.allocate, &startup_.load.read_s,
                            &startup_.load.other_s, &startup_.resume};
  constexpr int kPhases = sizeof(phases) / sizeof(phases[0]);
  int64_t us[kPhases + 1];  // microseconds, then the bytes read
  for (int i = 0; i < kPhases; ++i) us[i] = static_cast<int64_t>(*phases[i] * 1e6);
  us[kPhases] = static_cast<int64_t>(startup_.load.bytes_read);
  run_->world.all_reduce_max(us, kPhases + 1);
  for (int i = 0; i < kPhases; ++i) *phases[i] = us[i] * 1e-6;
  startup_.load.bytes_read = static_cast<uint64_t>(us[kPhases]);
}

void RunReport::print_startup() const {
  if (!lead_) return;
  const TrainSettings& s = run_->settings;
  const bool quantized = s.finetune.base_quant != quant::Kind::kNone && s.finetune.lora.enabled();
  const double mb_s = startup_.load.read_s > 0 ? startup_.load.bytes_read / 1e6 / startup_.load.read_s : 0;
  std::cerr << "llamaft train: start-up " << startup_.total() << " s to the first step (slowest rank per phase): "
            << "launch " << startup_.launch << ", config and data " << startup_.config << ", allocation "
            << startup_.allocate << ", reading " << startup_.load.read_s << " (" << startup_.load.bytes_read / 1e9
            << " GB per rank at most, " << mb_s << " MB/s), " << (quantized ? "quantization and copies " : "copies ")
            << startup_.load.other_s << ", resume " << startup_.resume << ", outputs " << startup_.outputs << "\n";
}

void RunReport::write_run_info(const Config& cfg) {
  const std::vector<std::string> hosts = all_hostnames();  // collective: before any rank-0-only work
  const TrainSettings& s = run_->settings;
  metrics_ = std::make_unique<MetricsWriter>(lead_, s.out_dir, cfg.dump(), s.tensorboard);
  if (!lead_) return;
  Backend& be = run_->backend;
  const bool bf16 = run_->model_options.bf16_storage;
  const FsdpSettings& f = s.fsdp;
  PlanInputs in;
  in.fsdp = f.options(s.finetune.base_quant);
  in.fsdp.shard_group_size = run_->fsdp.mesh().shard_size;
  in.world = run_->world.size();
  in.micro_batch = static_cast<int>(s.batch.micro_batch);
  in.seq_len = s.seq_len;
  in.activation_checkpointing = f.activation_checkpointing;
  in.lora = s.finetune.lora;
  in.bf16_storage = bf16;
  in.host_resident = be.host_resident();
  in.async_checkpoint = run_->checkpoints.stages_async();
  plan_ = plan_memory(run_->model_config, in);
  unsigned h5maj = 0, h5min = 0, h5rel = 0;
  H5get_libversion(&h5maj, &h5min, &h5rel);
  const char* job = std::getenv("SLURM_JOB_ID");
  metrics_->run_info({
      {"llamaft_version", LLAMAFT_VERSION},
      {"git_revision", git_revision()},
      {"world_size", run_->world.size()},
      {"hostnames", hosts},
      {"strategy", strategy_name(s.fsdp.strategy)},
      {"method", s.finetune.method},
      {"backend", be.name()},
      {"compute", bf16 ? "bf16 (GEMMs: " + be.bf16_gemm_name() + ")" : "fp32"},
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
  print_banner();
}

void RunReport::print_banner() const {
  const TrainSettings& s = run_->settings;
  const quant::Kind q = s.finetune.base_quant;
  const bool qlora = q == quant::Kind::kNf4 || q == quant::Kind::kNf4Plain;
  const ParamCounts params = param_counts();
  const int world = run_->world.size();
  std::cerr << "llamaft train: " << params.trainable << " trainable of " << params.total << " parameters ("
            << 100.0 * static_cast<double>(params.trainable) / static_cast<double>(params.total) << "%)"
            << (s.finetune.lora.enabled()
                    ? str_cat(" (", qlora ? "QLoRA" : "LoRA", " r=", s.finetune.lora.rank, " over a frozen ",
                              q == quant::Kind::kNone ? "fp32" : quant::kind_name(q), " base)")
                    : std::string(" (full fine-tuning)"))
            << ", " << world << " ranks, fsdp " << strategy_name(s.fsdp.strategy) << " (shard "
            << run_->fsdp.mesh().shard_size << " x replica " << run_->fsdp.mesh().replica_size << "), global batch "
            << s.batch.global_batch << " = " << s.batch.micro_batch << " micro x " << world << " ranks x "
            << s.accumulation << " accumulation, seq " << s.seq_len << ", " << run_->train_data.rows.size() << " rows";
  if (run_->train_data.truncated_rows) std::cerr << " (" << run_->train_data.truncated_rows << " truncated)";
  if (!run_->model_config.unused_keys.empty()) std::cerr << "\nllamaft train: " << unused_keys_note(run_->model_config);
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
  std::cerr << "llamaft train: " << run_->backend.name() << " computing in "
            << (run_->model_options.bf16_storage
                    ? "bf16 (bf16 weights and activations, fp32 master weights, gradients and AdamW; GEMMs: " +
                          run_->backend.bf16_gemm_name() + ")"
                    : std::string("fp32"))
            << "\n";
  std::cerr << "llamaft train: MFU counts " << flops_per_token_ / 1e9 << " GFLOP per token over a peak of "
            << peak_flops_ / 1e12 << " TFLOP/s (" << peak_source_ << ", all ranks)\n";
}

RunReport::ParamCounts RunReport::param_counts() const {
  ParamCounts c;
  for (const Unit& u : run_->fsdp.layout().units()) {
    c.total += u.numel;
    if (u.trainable) c.trainable += u.numel;
    if (u.kind == UnitKind::kLora) c.adapter += u.numel;
  }
  return c;
}

double RunReport::mfu(const StepMetrics& m) const {
  if (peak_flops_ <= 0 || m.step_s <= 0) return -1;
  return flops_per_token_ * m.tokens_per_s() / peak_flops_;
}

void RunReport::memory_phase(const std::string& next) {
  const std::string ending = memory_->current();
  const MemoryPhases::Peak p = memory_->switch_to(next);
  MemoryPhases::Peak& kept = memory_peaks_[ending];
  kept.hwm = std::max(kept.hwm, p.hwm);
  kept.anon = std::max(kept.anon, p.anon);
  kept.file = std::max(kept.file, p.file);
  kept.shmem = std::max(kept.shmem, p.shmem);
}

void RunReport::step(const StepMetrics& m, int64_t consumed_rows) {
  const TrainSettings& s = run_->settings;
  if (first_step_s_ < 0) first_step_s_ = m.step_s;
  if (const StepCounters* c = run_->backend.counters(); c && c->timed) profile_.add(*c, m.step_s);
  if (m.step % s.log_every == 0 || m.step == s.steps) {
    Fsdp& fsdp = run_->fsdp;
    const double rows = static_cast<double>(run_->train_data.rows.size());
    nlohmann::ordered_json extra = {{"mem_params_bytes", fsdp.param_bytes()},
                                    {"mem_grads_bytes", fsdp.grad_bytes()},
                                    {"mem_optimizer_bytes", fsdp.optimizer_bytes()}};
    extra["mem_activations_bytes"] = run_->model.activation_bytes();
    extra["mem_buffers_bytes"] = fsdp.peak_buffer_bytes();
    extra["mem_peak_bytes"] = run_->backend.peak_bytes();
    extra["world_size"] = run_->world.size();
    extra["strategy"] = strategy_name(s.fsdp.strategy);
    extra["restarts"] = restarts_;
    extra["time"] = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    extra["elapsed_s"] = progress_->elapsed_s();
    extra["epoch"] = rows > 0 ? static_cast<double>(consumed_rows) / rows : 0.0;
    extra["mfu"] = mfu(m);
    if (const StepCounters* c = run_->backend.counters()) extra["device"] = step_counters_json(*c);
    metrics_->step(m, extra);
  }
  ProgressPoint p;
  p.step = m.step;
  p.loss = m.loss;
  p.lr = m.lr;
  p.tokens_per_s = m.tokens_per_s();
  p.mfu = mfu(m);
  p.peak_bytes = static_cast<int64_t>(run_->backend.peak_bytes());
  if (lead_) p.rss_peak_bytes = read_proc_memory().hwm;
  progress_->update(p);
}

void RunReport::validation(int64_t step, const SplitLoss& v) {
  if (!lead_ || v.tokens <= 0) return;
  metrics_->validation(step, v.mean(), v.correct / v.tokens, static_cast<int64_t>(v.tokens));
  std::cerr << "llamaft train: step " << step << " validation loss " << v.mean() << "\n";
}

void RunReport::task(int64_t step, const TaskResult& t) {
  metrics_->task(step, t.summary());
  if (lead_) std::cerr << "llamaft train: step " << step << " task " << t.summary().dump() << "\n";
}

void RunReport::samples(int64_t step, const SamplePrompts& prompts, const std::vector<std::vector<int32_t>>& samples) {
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto& tok = prompts.tokenizer;
    metrics_->sample(step, i, prompts.ids[i], samples[i], prompts.texts[i],
                     tok ? decode_sample(*tok, samples[i]) : std::string());
  }
}

void RunReport::summary(double train_s) {
  // Every rank's peak resident memory per phase (VmHWM, reset at each phase
  // change) and the largest RssAnon / RssFile / RssShmem its sampler saw.
  if (run_->settings.profile && !profile_.empty()) {
    const nlohmann::ordered_json p = profile_.finish(run_->backend, run_->world, run_->model_options.bf16_storage);
    if (lead_) {
      std::ofstream(run_->settings.out_dir + "/profile.json") << p.dump(2) << "\n";
      std::cerr << StepProfile::format(p);
    }
  }
  memory_phase("summary");
  const char* kPhases[] = {"startup", "train", "checkpoint", "export"};
  constexpr int kN = 4;
  int64_t peaks[5 * kN];
  for (int i = 0; i < kN; ++i) {
    const MemoryPhases::Peak p = memory_peaks_.count(kPhases[i]) ? memory_peaks_[kPhases[i]] : MemoryPhases::Peak{};
    const int64_t v[5] = {p.hwm, -p.hwm, p.anon, p.file, p.shmem};
    std::copy(v, v + 5, peaks + 5 * i);
  }
  run_->world.all_reduce_max(peaks, 5 * kN);
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
  const Checkpointer& ck = run_->checkpoints;
  metrics_->summary({
      {"world_size", run_->world.size()},
      {"strategy", strategy_name(run_->settings.fsdp.strategy)},
      {"steps", run_->settings.steps},
      {"train_s", train_s},
      {"first_step_s", first_step_s_},
      {"checkpoints", ck.saves()},
      {"checkpoint_save_s", ck.save_seconds()},
      {"checkpoint_stall_s", ck.stall_seconds()},
      {"startup_s", startup_.total()},
      {"peak_rss_bytes_max_rank", max_peak},
      {"peak_rss_bytes_min_rank", min_peak},
      {"memory_plan_bytes", plan_.total},
      {"peak_rss_plan_ratio_max_rank", plan_.total ? static_cast<double>(max_peak) / plan_.total : 0.0},
      {"memory_phases", phases},
      {"peak_backend_bytes_rank0", run_->backend.peak_bytes()},
  });
}

}  // namespace llamaft
