// `llamaft plan`: per-rank memory for params, grads, optimizer state,
// activations and buffers under each FSDP strategy, without running; the
// total is the largest of the step, loading and a checkpoint save. The
// prediction itself is train/memory_plan.cpp's; the sharding and storage
// settings are train's own (FsdpSettings), and whether asynchronous saves
// stage a copy is the checkpoint section's (CheckpointSettings). This file
// reads plan's keys and prints the table (or JSON lines).
#include <algorithm>
#include <cstdio>
#include <string>

#include "backend/registry.hpp"
#include "checkpoint/policy.hpp"
#include "cli/command.hpp"
#include "core/error.hpp"
#include "model/hf_model.hpp"
#include "model/lora.hpp"
#include "train/memory_plan.hpp"
#include "train/settings.hpp"

namespace llamaft {

int run_plan(const Config& cfg) {
  LlamaConfig mc;
  const std::string preset = cfg.get_string("plan.preset");
  if (!preset.empty()) mc = preset_config(preset);
  else {
    cfg.require("model.path", "plan");
    mc = read_model_config(cfg.get_string("model.path"));
  }
  const int world = static_cast<int>(cfg.get_int("plan.np"));
  const FsdpSettings fsdp = FsdpSettings::from_config(cfg);
  const CheckpointSettings checkpoints = CheckpointSettings::read(cfg);
  // No data is read: the rows are data.seq_len long, as configured.
  const int mb = static_cast<int>(cfg.get_int("train.micro_batch_size"));
  const int seq = static_cast<int>(cfg.get_int("data.seq_len"));
  const bool recompute = fsdp.activation_checkpointing;
  int group = fsdp.shard_group_size;
  if (group == 0) group = default_shard_group(world, static_cast<int>(cfg.get_int("plan.ranks_per_node")));

  if (!cfg.get_bool("plan.json")) std::printf("llamaft plan: %s, %lld parameters, %s, np %d, micro batch %d x seq %d%s\n",
              preset.empty() ? cfg.get_string("model.path").c_str() : preset.c_str(),
              static_cast<long long>(mc.num_parameters()),
              (cfg.get_string("finetune.method") +
               (base_quant_from_config(cfg) != quant::Kind::kNone
                    ? std::string(" (base ") + quant::kind_name(base_quant_from_config(cfg)) + ")"
                    : std::string()))
                  .c_str(),
              world, mb, seq,
              recompute ? ", activation checkpointing" : "");
  if (!cfg.get_bool("plan.json")) std::printf("per-rank bytes (GiB)   %10s %10s %10s %11s %10s %10s %10s   %8s %8s %10s\n", "params", "grads", "optimizer",
              "activations", "buffers", "workspace", "step", "loading", "ckpt", "total");
  const bool cuda = cfg.get_string("runtime.backend") == "cuda";
  // bf16 params compute in bf16 on both backends: bf16 activations.
  const bool bf16_storage = fsdp.bf16_params;
  for (ShardStrategy s : {ShardStrategy::kFullShard, ShardStrategy::kShardGradOp, ShardStrategy::kNoShard,
                          ShardStrategy::kHybridShard}) {
    if (cfg.is_explicit("fsdp.strategy") && !cfg.get_bool("plan.all") && fsdp.strategy != s) continue;
    PlanInputs in;
    in.fsdp = fsdp.options(base_quant_from_config(cfg));
    in.fsdp.strategy = s;
    in.fsdp.shard_group_size = group;
    in.world = world;
    in.micro_batch = mb;
    in.seq_len = seq;
    in.activation_checkpointing = recompute;
    in.lora = lora_spec_from_config(cfg);
    in.bf16_storage = bf16_storage;
    in.host_resident = !cuda;
    in.async_checkpoint = checkpoints.stages_async();
    const MemoryPlan p = plan_memory(mc, in);
    if (cfg.get_bool("plan.json")) {
      std::printf("{\"strategy\": \"%s\", \"np\": %d, \"params\": %zu, \"grads\": %zu, \"optimizer\": %zu, "
                  "\"activations\": %zu, \"buffers\": %zu, \"workspace\": %zu, \"load\": %zu, \"step\": %zu, "
                  "\"checkpoint\": %zu, \"checkpoint_staging\": %zu, \"total\": %zu}\n",
                  strategy_name(s), world, p.params, p.grads, p.optimizer, p.activations, p.buffers, p.workspace,
                  p.load, p.step, p.checkpoint, p.checkpoint_staging, p.total);
      continue;
    }
    const double g = 1024.0 * 1024.0 * 1024.0;
    std::string label = strategy_name(s);
    if (s == ShardStrategy::kHybridShard) label += " (g=" + std::to_string(group) + ")";
    std::printf("%-22s %10.4f %10.4f %10.4f %11.4f %10.4f %10.4f %10.4f   %8.4f %8.4f %10.4f\n", label.c_str(),
                p.params / g, p.grads / g, p.optimizer / g, p.activations / g, p.buffers / g, p.workspace / g,
                p.step / g, p.load / g, p.checkpoint / g, p.total / g);
  }
  if (cuda) {
    // The CUDA backend's pool stops short of the GPU by this much (the context, cuBLAS, NCCL's buffers).
    const int comms = world > 1 ? 3 : 0;
    const double g = 1024.0 * 1024.0 * 1024.0;
    const size_t gpu = static_cast<size_t>(cfg.get_float("plan.gpu_gib") * g);
    const size_t reserve = cuda_pool_reserve_bytes(gpu, comms);
    if (cfg.get_bool("plan.json"))
      std::printf("{\"cuda_reserve\": %zu, \"gpu_bytes\": %zu, \"nccl_comms\": %d}\n", reserve, gpu, comms);
    else
      std::printf("cuda: besides the total, the backend leaves %.4f GiB of a %.0f GiB GPU (plan.gpu_gib) outside its "
                  "pool: max(2 GiB, 1/32 of the GPU) for the CUDA context and cuBLAS, plus 2 GiB for each of %d NCCL "
                  "communicators\n",
                  reserve / g, gpu / g, comms);
  }
  return 0;
}

}  // namespace llamaft
