// `llamaft train`: full fine-tuning with FSDP over MPI. Every rank runs this
// same code; rank 0 alone prints and writes metrics. The loss of a step is the
// mean cross-entropy over every non-ignored target of the global batch, so
// results do not depend on np or on how the batch is split.
#include <cblas.h>
#include <hdf5.h>
#include <omp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "cli/command.hpp"
#include "checkpoint/checkpoint.hpp"
#include "checkpoint/preemption.hpp"
#include "cli/runtime.hpp"
#include "comm/communicator.hpp"
#include "core/error.hpp"
#include "core/util.hpp"
#include "data/prepared_dataset.hpp"
#include "data/token_dataset.hpp"
#include "model/device_batch.hpp"
#include "model/hf_model.hpp"
#include "model/lora.hpp"
#ifdef LLAMAFT_HAS_CUDA
#include "backend/cuda/cuda_backend.hpp"
#include "comm/nccl_comm.hpp"
#endif
#include "optim/optimizer.hpp"
#include "parallel/fsdp_io.hpp"
#include "train/data_order.hpp"
#include "train/memory_plan.hpp"
#include "train/progress.hpp"
#include "train/tensorboard.hpp"
#include "train/tracker.hpp"

namespace llamaft {

const char* git_revision();  // generated at configure time (CMakeLists.txt)

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct TrainSettings {
  int64_t global_batch, micro_batch, steps, accumulation;
  int seq_len;
  OptimizerConfig opt;
};

TrainSettings settings_from(const Config& cfg, int world) {
  TrainSettings s;
  s.global_batch = cfg.get_int("train.global_batch_size");
  s.micro_batch = cfg.get_int("train.micro_batch_size");
  s.steps = cfg.get_int("train.steps");
  s.seq_len = static_cast<int>(cfg.get_int("data.seq_len"));
  if (s.global_batch % (s.micro_batch * world) != 0) {
    std::string ok_globals, ok_micros;
    for (int64_t k = 1; k <= 4; ++k) ok_globals += (k > 1 ? ", " : "") + std::to_string(k * s.micro_batch * world);
    for (int64_t m = 1; m <= s.global_batch / world; ++m)
      if (s.global_batch % (m * world) == 0) ok_micros += (ok_micros.empty() ? "" : ", ") + std::to_string(m);
    LLAMAFT_FAIL("train.global_batch_size = ", s.global_batch, " is not a multiple of micro_batch_size (",
                 s.micro_batch, ") x data-parallel ranks (", world, "); use global_batch_size in {", ok_globals,
                 ", ...}", ok_micros.empty() ? std::string("") : " or micro_batch_size in {" + ok_micros + "}");
  }
  s.accumulation = s.global_batch / (s.micro_batch * world);
  s.opt.lr = cfg.get_float("train.lr");
  s.opt.min_lr = cfg.get_float("train.min_lr");
  s.opt.weight_decay = cfg.get_float("train.weight_decay");
  s.opt.beta1 = cfg.get_float("train.beta1");
  s.opt.beta2 = cfg.get_float("train.beta2");
  s.opt.eps = cfg.get_float("train.eps");
  s.opt.max_grad_norm = cfg.get_float("train.max_grad_norm");
  s.opt.schedule = cfg.get_string("train.lr_schedule");
  s.opt.warmup_steps = cfg.get_int("train.warmup_steps");
  s.opt.total_steps = s.steps;
  LLAMAFT_REQUIRE(s.opt.min_lr <= s.opt.lr, "train.min_lr (", s.opt.min_lr, ") must not exceed train.lr (",
                  s.opt.lr, ")");
  return s;
}

}  // namespace

int run_train(const Config& cfg) {
  apply_runtime_settings(cfg);
  LLAMAFT_REQUIRE(mpi_active(), "internal: train needs MPI");
  auto world = make_mpi_world_comm();
  const int rank = world->rank(), nranks = world->size();
  const bool lead = rank == 0;

  // Fault injection for the tests (documented in tests/mpi/check_train_errors.py).
  const char* fail_rank = std::getenv("LLAMAFT_INJECT_FAIL_RANK");
  if (fail_rank && std::atoi(fail_rank) == rank)
    LLAMAFT_FAIL("injected failure on this rank (LLAMAFT_INJECT_FAIL_RANK)");
  const char* nan_step_env = std::getenv("LLAMAFT_INJECT_NAN_STEP");
  const int64_t nan_step = nan_step_env ? std::atoll(nan_step_env) : -1;

  // ---- validate everything before touching a device --------------------------------
  // Before the (possibly minutes-long) load: a preemption signal that arrives while the model and data are
  // read is kept, and honoured at the first step boundary, instead of killing the rank with no checkpoint.
  install_preemption_handlers(parse_signal_list(cfg.get_string("checkpoint.signals")));
  const TrainSettings ts = settings_from(cfg, nranks);
  const ShardStrategy strategy = parse_strategy(cfg.get_string("fsdp.strategy"));
  const std::string model_dir = cfg.get_string("model.path");
  const std::string out_dir = cfg.get_string("output.dir");
  const LlamaConfig mc = read_model_config(model_dir);
  const TokenDataset ds = load_dataset(cfg.get_string("data.path"), cfg.get_string("data.format"), ts.seq_len, mc.vocab_size);
  // Validation split: data.val_path, or DIR/val next to a prepared DIR/train.
  std::string val_path = cfg.get_string("data.val_path");
  const std::string data_path = cfg.get_string("data.path");
  if (val_path.empty() && is_prepared_dataset(data_path) && data_path.size() > 6 &&
      data_path.compare(data_path.size() - 6, 6, "/train") == 0 &&
      is_prepared_dataset(data_path.substr(0, data_path.size() - 6) + "/val"))
    val_path = data_path.substr(0, data_path.size() - 6) + "/val";
  const int64_t eval_every = cfg.get_int("train.eval_every");
  const int64_t sample_every = cfg.get_int("train.sample_every");
  const int sample_max_new = static_cast<int>(cfg.get_int("train.sample_max_new_tokens"));
  std::vector<std::vector<int32_t>> sample_prompts;
  {
    std::stringstream prompts(cfg.get_string("train.sample_prompts"));
    for (std::string one; std::getline(prompts, one, ';');) {
      std::vector<int32_t> ids;
      std::stringstream items(one);
      for (std::string item; std::getline(items, item, ',');) {
        char* end = nullptr;
        const long v = std::strtol(item.c_str(), &end, 10);
        LLAMAFT_REQUIRE(end != item.c_str() && v >= 0 && v < mc.vocab_size, "train.sample_prompts: '", item,
                        "' is not a token id in [0, ", mc.vocab_size, ")");
        ids.push_back(static_cast<int32_t>(v));
      }
      if (!ids.empty()) sample_prompts.push_back(std::move(ids));
    }
  }
  LLAMAFT_REQUIRE(sample_every == 0 || !sample_prompts.empty(),
                  "train.sample_every needs train.sample_prompts (token ids, e.g. '1,12,13;1,15')");
  TokenDataset val_ds;
  if (eval_every > 0) {
    LLAMAFT_REQUIRE(!val_path.empty(), "train.eval_every needs a validation split: set data.val_path, or prepare "
                    "with --val-fraction and point data.path at DIR/train");
    val_ds = load_dataset(val_path, cfg.get_string("data.format"), ts.seq_len, mc.vocab_size);
  }
  int shard_group = static_cast<int>(cfg.get_int("fsdp.shard_group_size"));
  if (strategy == ShardStrategy::kHybridShard && shard_group == 0) {
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    shard_group = local ? std::atoi(local) : nranks;
  }

  auto be = make_backend(cfg);
  ModelOptions mopts;
  mopts.activation_checkpointing = cfg.get_bool("fsdp.activation_checkpointing");
  mopts.lora = lora_spec_from_config(cfg);
  mopts.lora_dropout = static_cast<float>(cfg.get_float("lora.dropout"));
  const uint64_t dropout_seed = rowmath::mix64(static_cast<uint64_t>(cfg.get_int("train.seed")) ^ 0xD50u);
  const bool lora = mopts.lora.enabled();
  const bool bf16_params = cfg.get_string("train.param_dtype") == "bf16";
  // bf16 activations where the backend has them (CUDA); the CPU reference
  // widens the bf16-gathered weights and computes in fp32.
  mopts.bf16_storage = bf16_params && be->has_bf16_storage();
  LlamaModel model(mc, *be, mopts);
  const quant::Kind base_quant = base_quant_from_config(cfg);
  // FSDP's collectives: MPI on the CPU backend, NCCL between GPUs (on the
  // backend's stream). `world` (MPI) keeps the host-side coordination.
  std::unique_ptr<Communicator> device_comm;
  Communicator* fsdp_comm = world.get();
#ifdef LLAMAFT_HAS_CUDA
  if (auto* cuda = dynamic_cast<CudaBackend*>(be.get())) {
    device_comm = make_nccl_world_comm(cuda->device(), cfg.get_float("runtime.comm_timeout_s"), cuda->stream());
    fsdp_comm = device_comm.get();
  }
#endif
  Fsdp fsdp(model.layout(), *be, *fsdp_comm, strategy, shard_group, base_quant, bf16_params);
  // The base always comes from the HF files under LoRA (checkpoints hold only
  // the adapters); a full fine-tune resumes everything from the checkpoint.
  if (lora || cfg.get_string("checkpoint.resume") == "none") load_sharded(model_dir, fsdp, *be);
  if (lora) {
    if (!cfg.get_string("lora.init_from").empty()) load_adapter_sharded(cfg.get_string("lora.init_from"), fsdp, *be);
    else init_lora_sharded(fsdp, *be, static_cast<uint64_t>(cfg.get_int("train.seed")));
  }
  DataOrder order(static_cast<int64_t>(ds.rows.size()), ts.global_batch, cfg.get_bool("data.shuffle"),
                  static_cast<uint64_t>(cfg.get_int("train.seed")));

  // ---- checkpoints: stale temporaries, resume, signals ------------------------------------
  const std::string ckpt_dir =
      cfg.get_string("checkpoint.dir").empty() ? out_dir + "/checkpoints" : cfg.get_string("checkpoint.dir");
  CheckpointManager ckpt(ckpt_dir, static_cast<int>(cfg.get_int("checkpoint.keep_last")));
  RunIdentity identity;
  identity.model_config_json = mc.to_json();
  identity.method = cfg.get_string("finetune.method");
  identity.base_fingerprint = model_fingerprint(model_dir);
  identity.global_batch = ts.global_batch;
  identity.seed = cfg.get_int("train.seed");
  identity.shuffle = cfg.get_bool("data.shuffle");
  identity.data_path = cfg.get_string("data.path");
  identity.strategy = strategy_name(strategy);
  identity.effective_config = cfg.dump();
  ckpt.remove_stale();
  TrainState state;
  const std::string resume = cfg.get_string("checkpoint.resume");
  if (resume != "none") {
    std::vector<std::string> candidates;
    if (resume == "auto") {
      // Rank 0 lists; everyone tries the same folders in the same order.
      std::string joined;
      if (lead)
        for (const auto& c : ckpt.auto_candidates()) joined += c + "\n";
      int64_t n = static_cast<int64_t>(joined.size());
      world->broadcast(&n, sizeof(n), 0);
      joined.resize(static_cast<size_t>(n));
      world->broadcast(joined.data(), joined.size(), 0);
      std::stringstream ss(joined);
      for (std::string line; std::getline(ss, line);) candidates.push_back(line);
    } else {
      candidates.push_back(resume);
    }
    bool loaded = false;
    for (size_t i = 0; i < candidates.size() && !loaded; ++i) {
      try {
        const auto t_load = Clock::now();
        state = ckpt.load(candidates[i], fsdp, *be, identity);
        loaded = true;
        if (lead)
          std::cerr << "llamaft train: resumed from " << candidates[i] << " at step " << state.step << " in "
                    << seconds_since(t_load) << " s\n";
      } catch (const CheckpointError& e) {
        if (resume != "auto") throw;  // an explicit path must be usable
        if (lead)
          std::cerr << "llamaft train: skipping unusable checkpoint: " << e.what()
                    << (i + 1 < candidates.size() ? "; falling back to the previous one\n" : "\n");
      }
    }
    if (!loaded && !candidates.empty())
      throw CheckpointError(str_cat("none of the ", candidates.size(), " checkpoints in '", ckpt_dir,
                                    "' is usable; fix or remove them, or set checkpoint.resume = none"));
    if (!loaded && !lora) load_sharded(model_dir, fsdp, *be);  // nothing to resume: start from the base model
  }
  const int64_t every_steps = cfg.get_int("checkpoint.every_steps");
  const int64_t exit_after = cfg.get_int("train.exit_after_steps");
  const double every_minutes = cfg.get_float("checkpoint.every_minutes");
  auto last_save = Clock::now();
  const char* restarts_env = std::getenv("SLURM_RESTART_COUNT");
  const int64_t restarts = restarts_env ? std::atoll(restarts_env) : 0;

  const std::vector<std::string> hosts = all_hostnames();  // collective: before any rank-0-only work
  std::ofstream metrics;
  if (lead) {
    make_directories(out_dir);
    metrics.open(out_dir + "/metrics.jsonl", std::ios::app);
    LLAMAFT_REQUIRE(metrics.good(), "cannot write '", out_dir, "/metrics.jsonl'");
    std::ofstream(out_dir + "/config.cfg") << cfg.dump();
    unsigned h5maj = 0, h5min = 0, h5rel = 0;
    H5get_libversion(&h5maj, &h5min, &h5rel);
    nlohmann::ordered_json info = {
        {"llamaft_version", LLAMAFT_VERSION},
        {"git_revision", git_revision()},
        {"world_size", nranks},
        {"hostnames", hosts},
        {"strategy", strategy_name(strategy)},
        {"method", cfg.get_string("finetune.method")},
        {"backend", be->name()},
        {"omp_threads", omp_get_max_threads()},
        {"slurm_job_id", std::getenv("SLURM_JOB_ID") ? std::getenv("SLURM_JOB_ID") : ""},
        {"restarts", restarts},
        {"libraries", {{"mpi", mpi_library_version()},
                       {"hdf5", str_cat(h5maj, ".", h5min, ".", h5rel)},
                       {"openblas", openblas_get_config()}}},
    };
    std::ofstream(out_dir + "/run_info.json") << info.dump(2) << "\n";
    std::cerr << "llamaft train: " << mc.num_parameters() << " parameters"
              << (lora ? str_cat(" (", base_quant == quant::Kind::kNf4 || base_quant == quant::Kind::kNf4Plain ? "QLoRA" : "LoRA", " r=", mopts.lora.rank,
                                " over a frozen ", base_quant == quant::Kind::kNone ? "fp32" : quant::kind_name(base_quant),
                                " base)")
                      : std::string(" (full fine-tuning)"))
              << ", " << nranks << " ranks, fsdp "
              << strategy_name(strategy) << " (shard " << fsdp.mesh().shard_size << " x replica "
              << fsdp.mesh().replica_size << "), global batch " << ts.global_batch << " = " << ts.micro_batch
              << " micro x " << nranks << " ranks x " << ts.accumulation << " accumulation, seq " << ts.seq_len
              << ", " << ds.rows.size() << " rows";
    if (ds.truncated_rows) std::cerr << " (" << ds.truncated_rows << " truncated)";
    const MemoryPlan plan = plan_memory(mc, strategy, nranks, fsdp.mesh().shard_size, static_cast<int>(ts.micro_batch),
                                        ts.seq_len, mopts.activation_checkpointing, mopts.lora, base_quant, bf16_params,
                                        mopts.bf16_storage);
    std::cerr << "\nllamaft train: per-rank memory plan " << plan.total / 1048576.0 << " MiB (params "
              << plan.params / 1048576.0 << ", grads " << plan.grads / 1048576.0 << ", optimizer "
              << plan.optimizer / 1048576.0 << ", activations " << plan.activations / 1048576.0 << ", buffers "
              << plan.buffers / 1048576.0 << ")\n";
  }

  TrackerFollower tracker(cfg, out_dir, lead);  // output.tracker: W&B or MLflow beside the run (never fatal)

  Progress progress(lead && cfg.get_bool("output.progress"), ts.steps);
  std::unique_ptr<TensorBoardWriter> tb;
  if (lead && cfg.get_bool("output.tensorboard")) tb = std::make_unique<TensorBoardWriter>(out_dir + "/tensorboard");
  DeviceBatch dev(*be);
  const auto train_start = Clock::now();
  const int64_t max_skips = cfg.get_int("train.max_nonfinite_skips");
  int64_t skips_in_row = state.skips_in_row;
  int64_t saved_step = -1;
  const int log_every = static_cast<int>(cfg.get_int("train.log_every"));
  for (int64_t step = state.step; step < ts.steps; ++step) {
    const auto t0 = Clock::now();
    const CommStats comm0 = fsdp.comm_totals();
    const std::vector<int64_t> my_rows = order.rows_for(step, rank, nranks);

    std::vector<HostBatch> micro;
    double counts[2] = {0, 0};  // target tokens, input tokens (this rank)
    for (int64_t k = 0; k < ts.accumulation; ++k) {
      std::vector<const TokenRow*> rows;
      int longest = 2;
      for (int64_t j = 0; j < ts.micro_batch; ++j) {
        const TokenRow& r = ds.rows[my_rows[k * ts.micro_batch + j]];
        rows.push_back(&r);
        longest = std::max<int>(longest, static_cast<int>(r.input_ids.size()));
        counts[1] += static_cast<double>(r.input_ids.size());
      }
      micro.push_back(make_batch(rows, longest));
      if (mopts.lora_dropout > 0) {
        // Each sequence's masks depend on (seed, step, dataset row) only: the
        // same at any rank count, accumulation or activation checkpointing.
        for (int64_t j = 0; j < ts.micro_batch; ++j)
          micro.back().dropout_keys.push_back(rowmath::mix64(
              dropout_seed ^
              rowmath::mix64(static_cast<uint64_t>(step) << 32 ^ static_cast<uint64_t>(my_rows[k * ts.micro_batch + j]))));
      }
      counts[0] += static_cast<double>(micro.back().target_tokens);
    }
    world->all_reduce_sum(counts, 2);
    LLAMAFT_REQUIRE(counts[0] > 0, "step ", step + 1, ": the global batch has no target tokens (all labels -100?)");
    const float loss_scale = static_cast<float>(1.0 / counts[0]);

    fsdp.zero_grad_shards();
    double loss_sum = 0;
    for (const auto& hb : micro) {
      loss_sum += model.forward_backward(dev.upload(hb), fsdp, loss_scale).loss_sum;
      fsdp.end_backward();
    }
    if (nan_step >= 0 && step + 1 >= nan_step && rank == nranks - 1) loss_sum = std::nan("");
    world->all_reduce_sum(&loss_sum, 1);
    const double loss = loss_sum / counts[0];
    StepResult r;
    if (std::isfinite(loss)) {
      r = adamw_step(fsdp, *be, ts.opt, step);
    } else {
      r.finite = false;
      r.lr = learning_rate(ts.opt, step);
    }
    if (!r.finite) {
      ++skips_in_row;
      if (lead) std::cerr << "llamaft train: step " << step + 1 << ": non-finite loss or gradient norm; update skipped\n";
      if (skips_in_row > max_skips)
        throw Error(str_cat("training diverged: ", skips_in_row, " consecutive steps with NaN/inf loss or gradients "
                            "(train.max_nonfinite_skips = ", max_skips, "); lower train.lr or check the data"),
                    kExitDiverged);
    } else {
      skips_in_row = 0;
    }
    const double step_s = seconds_since(t0);
    const CommStats comm1 = fsdp.comm_totals();
    if (lead && ((step + 1) % log_every == 0 || step + 1 == ts.steps)) {
      nlohmann::ordered_json m = {
          {"step", step + 1},
          {"loss", loss},
          {"lr", r.lr},
          {"grad_norm", r.grad_norm},
          {"tokens", static_cast<int64_t>(counts[1])},
          {"target_tokens", static_cast<int64_t>(counts[0])},
          {"tokens_per_s", counts[1] / step_s},
          {"step_s", step_s},
          {"comm_s", comm1.wait_seconds - comm0.wait_seconds},
          {"comm_bytes", (comm1.all_gather_bytes - comm0.all_gather_bytes) +
                             (comm1.reduce_scatter_bytes - comm0.reduce_scatter_bytes) +
                             (comm1.all_reduce_bytes - comm0.all_reduce_bytes)},
          {"all_gather_bytes", comm1.all_gather_bytes - comm0.all_gather_bytes},
          {"reduce_scatter_bytes", comm1.reduce_scatter_bytes - comm0.reduce_scatter_bytes},
          {"all_reduce_bytes", comm1.all_reduce_bytes - comm0.all_reduce_bytes},
          {"skipped", !r.finite},
          {"mem_params_bytes", fsdp.param_bytes()},
          {"mem_grads_bytes", fsdp.grad_bytes()},
          {"mem_optimizer_bytes", fsdp.optimizer_bytes()},
          {"mem_activations_bytes", model.activation_bytes()},
          {"mem_buffers_bytes", fsdp.peak_buffer_bytes()},
          {"mem_peak_bytes", be->peak_bytes()},
          {"world_size", nranks},
          {"strategy", strategy_name(strategy)},
          {"restarts", restarts},
      };
      metrics << m.dump() << std::endl;
      if (tb) {
        tb->scalar("train/loss", loss, step + 1);
        tb->scalar("train/lr", r.lr, step + 1);
        tb->scalar("train/grad_norm", r.grad_norm, step + 1);
        tb->scalar("perf/tokens_per_s", counts[1] / step_s, step + 1);
        tb->flush();
      }
    }
    progress.update(step + 1, loss, counts[1] / step_s, be->peak_bytes());
    if (eval_every > 0 && ((step + 1) % eval_every == 0 || step + 1 == ts.steps)) {
      // Rows r, r + W, ... on rank r; sums over every rank.
      const int64_t limit = cfg.get_int("train.eval_rows") > 0
                                ? std::min<int64_t>(cfg.get_int("train.eval_rows"), val_ds.rows.size())
                                : static_cast<int64_t>(val_ds.rows.size());
      double sums[3] = {0, 0, 0};  // loss, tokens, correct
      // Every rank must run the same number of forward passes (each gathers
      // units collectively): agree on the count first, pad with dummy rows.
      int64_t batches = 0;
      for (int64_t first = rank * ts.micro_batch; first < limit; first += ts.micro_batch * nranks) ++batches;
      world->all_reduce_max(&batches, 1);
      for (int64_t k = 0; k < batches; ++k) {
        const int64_t first = (k * nranks + rank) * ts.micro_batch;
        std::vector<const TokenRow*> rows;
        int longest = 2;
        for (int64_t r = first; r < std::min(limit, first + ts.micro_batch); ++r) {
          rows.push_back(&val_ds.rows[r]);
          longest = std::max<int>(longest, static_cast<int>(val_ds.rows[r].input_ids.size()));
        }
        TokenRow dummy{{0, 0}, {-100, -100}, {}};  // contributes no tokens
        if (rows.empty()) rows.push_back(&dummy);
        const LossSum v = model.forward_loss(dev.upload(make_batch(rows, longest)), fsdp, true);
        sums[0] += v.loss_sum;
        sums[1] += static_cast<double>(v.tokens);
        sums[2] += static_cast<double>(v.correct);
      }
      fsdp.end_backward();
      world->all_reduce_sum(sums, 3);
      if (lead && sums[1] > 0) {
        nlohmann::ordered_json m = {{"step", step + 1},
                                    {"val_loss", sums[0] / sums[1]},
                                    {"val_ppl", std::exp(sums[0] / sums[1])},
                                    {"val_accuracy", sums[2] / sums[1]},
                                    {"val_tokens", static_cast<int64_t>(sums[1])}};
        metrics << m.dump() << std::endl;
        if (tb) tb->scalar("val/loss", sums[0] / sums[1], step + 1);
        std::cerr << "llamaft train: step " << step + 1 << " validation loss " << sums[0] / sums[1] << "\n";
      }
    }
    if (sample_every > 0 && (step + 1) % sample_every == 0) {
      // Every rank decodes in lockstep (each step gathers units); rank 0's
      // token is broadcast so the ranks can never disagree.
      for (size_t i = 0; i < sample_prompts.size(); ++i) {
        const auto& prompt = sample_prompts[i];
        model.reset_cache(static_cast<int>(prompt.size()) + sample_max_new);
        std::vector<float> logits = model.decode(prompt.data(), static_cast<int>(prompt.size()), fsdp);
        std::vector<int32_t> out;
        for (int k = 0; k < sample_max_new; ++k) {
          int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
          world->broadcast(&next, sizeof(next), 0);
          if (std::find(mc.eos_token_ids.begin(), mc.eos_token_ids.end(), next) != mc.eos_token_ids.end()) break;
          out.push_back(next);
          if (k + 1 < sample_max_new) logits = model.decode(&next, 1, fsdp);
        }
        fsdp.end_backward();
        if (lead) {
          nlohmann::ordered_json m = {{"step", step + 1}, {"sample", i}, {"prompt_ids", prompt}, {"sample_ids", out}};
          metrics << m.dump() << std::endl;
        }
      }
    }
    state.step = step + 1;
    state.consumed_rows = state.step * ts.global_batch;
    state.consumed_tokens += static_cast<int64_t>(counts[1]);
    state.skips_in_row = skips_in_row;

    // ---- step boundary: every rank agrees on signals and timers ---------------------------
    int64_t flags[2] = {preemption_signal(), 0};
    if (lead && every_minutes > 0 && seconds_since(last_save) >= every_minutes * 60) flags[1] = 1;
    world->all_reduce_max(flags, 2);
    const bool exit_now = exit_after > 0 && state.step >= exit_after && state.step < ts.steps;
    const bool periodic = (every_steps > 0 && state.step % every_steps == 0) || flags[1] || exit_now;
    if (flags[0] || periodic) {
      if (flags[0]) arm_grace_timer(static_cast<int>(cfg.get_int("checkpoint.grace_seconds")));
      const std::string path = ckpt.save(fsdp, *be, state, identity);
      saved_step = state.step;
      last_save = Clock::now();
      if (lead)
        std::cerr << "llamaft train: checkpoint " << path << " (" << ckpt.last_save_bytes() / 1e6 << " MB in "
                  << ckpt.last_save_seconds() << " s)\n";
      if (flags[0]) {
        if (lead)
          std::cerr << "llamaft train: signal " << flags[0] << " received; checkpointed at step " << state.step
                    << ", exiting " << kExitRequeue << " (requeue me)\n";
        progress.finish();
        return kExitRequeue;
      }
      if (exit_now) {
        if (lead) std::cerr << "llamaft train: train.exit_after_steps reached at step " << state.step << "\n";
        progress.finish();
        return 0;
      }
    }
  }
  progress.finish();
  if (cfg.get_bool("checkpoint.at_end") && saved_step != state.step && state.step > 0) {
    const std::string path = ckpt.save(fsdp, *be, state, identity);
    if (lead)
      std::cerr << "llamaft train: checkpoint " << path << " (" << ckpt.last_save_bytes() / 1e6 << " MB in "
                << ckpt.last_save_seconds() << " s)\n";
  }
  const double train_s = seconds_since(train_start);

  // Peak resident memory of every rank (ru_maxrss is KiB on Linux).
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  int64_t rss[2] = {static_cast<int64_t>(ru.ru_maxrss) * 1024, -static_cast<int64_t>(ru.ru_maxrss) * 1024};
  world->all_reduce_max(rss, 2);
  if (lead) {
    nlohmann::ordered_json summary = {
        {"world_size", nranks},
        {"strategy", strategy_name(strategy)},
        {"steps", ts.steps},
        {"train_s", train_s},
        {"peak_rss_bytes_max_rank", rss[0]},
        {"peak_rss_bytes_min_rank", -rss[1]},
        {"peak_backend_bytes_rank0", be->peak_bytes()},
    };
    std::ofstream(out_dir + "/summary.json") << summary.dump(2) << "\n";
  }

  if (cfg.get_bool("output.export")) {
    if (lora) {
      const std::string adapter_dir = out_dir + "/adapter";
      export_adapter_sharded(adapter_dir, model_dir, fsdp, *be);
      if (lead) std::cerr << "llamaft train: exported the PEFT adapter to " << adapter_dir << "\n";
    } else {
      const std::string export_dir = out_dir + "/model";
      export_sharded(export_dir, mc, fsdp, *be, cfg.get_string("output.export_dtype") == "bfloat16");
      if (lead) std::cerr << "llamaft train: exported the model to " << export_dir << "\n";
    }
  }
  tracker.finish();
  return 0;
}

}  // namespace llamaft
