// `llamaft plan`: per-rank memory for params, grads, optimizer state,
// activations and buffers under each FSDP strategy, without running; the
// total is the largest of the step, loading and a checkpoint save. The
// prediction itself is train/memory_plan.cpp's. What it predicts for is
// parsed by train's own section parsers (FsdpSettings, FinetuneSettings,
// BatchSettings, DataSettings) and the checkpoint section's
// (CheckpointSettings: whether asynchronous saves stage a copy), so plan and
// train cannot read a key differently. This file reads plan's own keys
// (plan.*) and prints the table (or JSON lines).
#include <algorithm>
#include <cstdio>
#include <string>

#include "backend/registry.hpp"
#include "checkpoint/policy.hpp"
#include "cli/command.hpp"
#include "cli/runtime.hpp"
#include "core/error.hpp"
#include "data/data_settings.hpp"
#include "model/hf_model.hpp"
#include "train/memory_plan.hpp"
#include "train/settings.hpp"

namespace llamaft {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// plan's own section.
struct PlanOptions {
  std::string preset;  // plan.preset: a preset's shape instead of model.path's
  int world = 1;       // plan.np
  int ranks_per_node = 8;
  bool json = false;   // one JSON line per strategy
  bool all = false;    // every strategy, even when the config names fsdp.strategy
  double gpu_gib = 80;  // runtime.backend = cuda: the GPU's memory

  static PlanOptions from_config(const Config& cfg) {
    PlanOptions o;
    o.preset = cfg.get_string("plan.preset");
    o.world = static_cast<int>(cfg.get_int("plan.np"));
    o.ranks_per_node = static_cast<int>(cfg.get_int("plan.ranks_per_node"));
    o.json = cfg.get_bool("plan.json");
    o.all = cfg.get_bool("plan.all");
    o.gpu_gib = cfg.get_float("plan.gpu_gib");
    return o;
  }
};

// What `train` would run with, through train's parsers. No data is read: the
// rows are data.seq_len long, as configured.
struct PlannedRun {
  FsdpSettings fsdp;
  FinetuneSettings finetune;
  int micro_batch = 0, seq_len = 0;
  bool async_checkpoint = false;  // periodic saves stage a host copy
  bool cuda = false;              // runtime.backend = cuda: device-resident

  static PlannedRun from_config(const Config& cfg) {
    PlannedRun r;
    r.fsdp = FsdpSettings::from_config(cfg);
    r.finetune = FinetuneSettings::from_config(cfg, r.fsdp.bf16_params);
    r.micro_batch = static_cast<int>(BatchSettings::from_config(cfg).micro_batch);
    r.seq_len = DataSettings::from_config(cfg).seq_len;
    r.async_checkpoint = CheckpointSettings::read(cfg).stages_async();
    r.cuda = RuntimeSettings::from_config(cfg).backend == "cuda";
    return r;
  }
};

void print_header(const std::string& model, const LlamaConfig& mc, const PlannedRun& run, int world) {
  const quant::Kind q = run.finetune.base_quant;
  const std::string method =
      run.finetune.method + (q != quant::Kind::kNone ? std::string(" (base ") + quant::kind_name(q) + ")" : "");
  std::printf("llamaft plan: %s, %lld parameters, %s, np %d, micro batch %d x seq %d%s\n", model.c_str(),
              static_cast<long long>(mc.num_parameters()), method.c_str(), world, run.micro_batch, run.seq_len,
              run.fsdp.activation_checkpointing ? ", activation checkpointing" : "");
  std::printf("per-rank bytes (GiB)   %10s %10s %10s %11s %10s %10s %10s   %8s %8s %10s\n", "params", "grads",
              "optimizer", "activations", "buffers", "workspace", "step", "loading", "ckpt", "total");
}

void print_strategy(ShardStrategy s, int group, int world, const MemoryPlan& p, bool json) {
  if (json) {
    std::printf("{\"strategy\": \"%s\", \"np\": %d, \"params\": %zu, \"grads\": %zu, \"optimizer\": %zu, "
                "\"activations\": %zu, \"buffers\": %zu, \"workspace\": %zu, \"load\": %zu, \"step\": %zu, "
                "\"checkpoint\": %zu, \"checkpoint_staging\": %zu, \"total\": %zu}\n",
                strategy_name(s), world, p.params, p.grads, p.optimizer, p.activations, p.buffers, p.workspace,
                p.load, p.step, p.checkpoint, p.checkpoint_staging, p.total);
    return;
  }
  std::string label = strategy_name(s);
  if (s == ShardStrategy::kHybridShard) label += " (g=" + std::to_string(group) + ")";
  std::printf("%-22s %10.4f %10.4f %10.4f %11.4f %10.4f %10.4f %10.4f   %8.4f %8.4f %10.4f\n", label.c_str(),
              p.params / kGiB, p.grads / kGiB, p.optimizer / kGiB, p.activations / kGiB, p.buffers / kGiB,
              p.workspace / kGiB, p.step / kGiB, p.load / kGiB, p.checkpoint / kGiB, p.total / kGiB);
}

// The CUDA backend's pool stops short of the GPU by this much (the context, cuBLAS, NCCL's buffers).
void print_cuda_reserve(const PlanOptions& opt) {
  const int comms = opt.world > 1 ? 3 : 0;
  const size_t gpu = static_cast<size_t>(opt.gpu_gib * kGiB);
  const size_t reserve = cuda_pool_reserve_bytes(gpu, comms);
  if (opt.json)
    std::printf("{\"cuda_reserve\": %zu, \"gpu_bytes\": %zu, \"nccl_comms\": %d}\n", reserve, gpu, comms);
  else
    std::printf("cuda: besides the total, the backend leaves %.4f GiB of a %.0f GiB GPU (plan.gpu_gib) outside its "
                "pool: max(2 GiB, 1/32 of the GPU) for the CUDA context and cuBLAS, plus 2 GiB for each of %d NCCL "
                "communicators\n",
                reserve / kGiB, gpu / kGiB, comms);
}

}  // namespace

int run_plan(const Config& cfg) {
  const PlanOptions opt = PlanOptions::from_config(cfg);
  LlamaConfig mc;
  if (!opt.preset.empty()) mc = preset_config(opt.preset);
  else {
    cfg.require("model.path", "plan");
    mc = read_model_config(cfg.get_string("model.path"));
  }
  const PlannedRun run = PlannedRun::from_config(cfg);
  int group = run.fsdp.shard_group_size;
  if (group == 0) group = default_shard_group(opt.world, opt.ranks_per_node);

  if (!opt.json) print_header(opt.preset.empty() ? cfg.get_string("model.path") : opt.preset, mc, run, opt.world);
  for (ShardStrategy s : {ShardStrategy::kFullShard, ShardStrategy::kShardGradOp, ShardStrategy::kNoShard,
                          ShardStrategy::kHybridShard}) {
    if (run.fsdp.strategy_given && !opt.all && run.fsdp.strategy != s) continue;
    PlanInputs in;
    in.fsdp = run.fsdp.options(run.finetune.base_quant);
    in.fsdp.strategy = s;
    in.fsdp.shard_group_size = group;
    in.world = opt.world;
    in.micro_batch = run.micro_batch;
    in.seq_len = run.seq_len;
    in.activation_checkpointing = run.fsdp.activation_checkpointing;
    in.lora = run.finetune.lora;
    // bf16 params compute in bf16 on both backends: bf16 activations.
    in.bf16_storage = run.fsdp.bf16_params;
    in.host_resident = !run.cuda;
    in.async_checkpoint = run.async_checkpoint;
    print_strategy(s, group, opt.world, plan_memory(mc, in), opt.json);
  }
  if (run.cuda) print_cuda_reserve(opt);
  return 0;
}

}  // namespace llamaft
