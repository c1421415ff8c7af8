// `llamaft plan`: per-rank memory for params, grads, optimizer state,
// activations and buffers under each FSDP strategy, without running. It
// drives the real training step (model + FSDP) on a counting backend and a
// stand-in communicator, so the numbers are the code's own allocations.
#include <cstdio>
#include <iostream>

#include "cli/command.hpp"
#include "comm/communicator.hpp"
#include "core/error.hpp"
#include "model/hf_model.hpp"
#include "model/lora.hpp"
#include "parallel/fsdp.hpp"
#include "train/memory_plan.hpp"

namespace llamaft {

namespace {

class NullRequest final : public Request {
 public:
  void wait() override {}
};

// Rank `rank` of `size`; split() hands out the sizes queued for it in order.
class PlanComm final : public Communicator {
 public:
  PlanComm(int size, int rank, std::vector<int> split_sizes = {})
      : size_(size), rank_(rank), split_sizes_(std::move(split_sizes)) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "plan"; }
  RequestPtr all_gather(const float*, float*, size_t) override { return std::make_unique<NullRequest>(); }
  RequestPtr reduce_scatter_sum(const float*, float*, size_t) override { return std::make_unique<NullRequest>(); }
  void all_reduce_sum(float*, size_t) override {}
  void all_reduce_sum(double*, size_t) override {}
  void all_reduce_max(int64_t*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  std::unique_ptr<Communicator> split(int, int) override {
    LLAMAFT_CHECK(next_ < split_sizes_.size(), "unexpected split in plan");
    return std::make_unique<PlanComm>(split_sizes_[next_++], 0);
  }

 private:
  int size_, rank_;
  std::vector<int> split_sizes_;
  size_t next_ = 0;
};

}  // namespace

MemoryPlan plan_memory(const LlamaConfig& mc, ShardStrategy strategy, int world, int shard_group,
                       int micro_batch, int seq_len, bool recompute, const LoraSpec& lora,
                       quant::Kind base_quant, bool bf16_params, bool bf16_storage) {
  auto be = make_counting_backend(bf16_storage);
  const MeshShape mesh = mesh_for(strategy, world, 0, shard_group);
  PlanComm comm(world, 0, {mesh.shard_size, mesh.replica_size});
  ModelOptions opts;
  opts.activation_checkpointing = recompute;
  opts.lora = lora;
  opts.bf16_storage = bf16_storage;
  LlamaModel model(mc, *be, opts);
  Fsdp fsdp(model.layout(), *be, comm, strategy, shard_group, base_quant, bf16_params);
  MemoryPlan p;
  p.params = fsdp.param_bytes();
  p.grads = fsdp.grad_bytes();
  p.optimizer = fsdp.optimizer_bytes();
  // One micro-batch of full rows, exactly as train runs it.
  const size_t n = static_cast<size_t>(micro_batch) * seq_len;
  DeviceArray<int32_t> ids(*be, n), pos(*be, n), tgt(*be, n);
  Batch b;
  b.batch = micro_batch;
  b.seq = seq_len;
  b.ids = ids.data();
  b.positions = pos.data();
  b.targets = tgt.data();
  const size_t before = be->live_bytes();
  model.forward_backward(b, fsdp, 1.f);
  fsdp.end_backward();
  p.activations = model.activation_bytes();
  p.buffers = fsdp.peak_buffer_bytes();
  p.total = be->peak_bytes() - 3 * n * sizeof(int32_t);
  p.workspace = p.total - p.params - p.grads - p.optimizer - p.activations - p.buffers;
  (void)before;
  return p;
}

int run_plan(const Config& cfg) {
  LlamaConfig mc;
  const std::string preset = cfg.get_string("plan.preset");
  if (!preset.empty()) mc = preset_config(preset);
  else {
    cfg.require("model.path", "plan");
    mc = read_model_config(cfg.get_string("model.path"));
  }
  const int world = static_cast<int>(cfg.get_int("plan.np"));
  const int mb = static_cast<int>(cfg.get_int("train.micro_batch_size"));
  const int seq = static_cast<int>(cfg.get_int("data.seq_len"));
  const bool recompute = cfg.get_bool("fsdp.activation_checkpointing");
  int group = static_cast<int>(cfg.get_int("fsdp.shard_group_size"));
  if (group == 0) group = std::min(world, 8);
  while (world % group) --group;

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
  if (!cfg.get_bool("plan.json")) std::printf("per-rank bytes (GiB)   %10s %10s %10s %11s %10s %10s %10s\n", "params", "grads", "optimizer",
              "activations", "buffers", "workspace", "total");
  const std::string only = cfg.get_string("fsdp.strategy");
  // bf16 activations where train would have them: the CUDA backend with bf16 params.
  const bool bf16 = cfg.get_string("train.param_dtype") == "bf16";
  const bool bf16_storage = bf16 && cfg.get_string("runtime.backend") == "cuda";
  for (ShardStrategy s : {ShardStrategy::kFullShard, ShardStrategy::kShardGradOp, ShardStrategy::kNoShard,
                          ShardStrategy::kHybridShard}) {
    if (cfg.is_explicit("fsdp.strategy") && only != strategy_name(s)) continue;
    const MemoryPlan p = plan_memory(mc, s, world, group, mb, seq, recompute, lora_spec_from_config(cfg),
                                     base_quant_from_config(cfg), bf16, bf16_storage);
    if (cfg.get_bool("plan.json")) {
      std::printf("{\"strategy\": \"%s\", \"np\": %d, \"params\": %zu, \"grads\": %zu, \"optimizer\": %zu, "
                  "\"activations\": %zu, \"buffers\": %zu, \"workspace\": %zu, \"total\": %zu}\n",
                  strategy_name(s), world, p.params, p.grads, p.optimizer, p.activations, p.buffers, p.workspace,
                  p.total);
      continue;
    }
    const double g = 1024.0 * 1024.0 * 1024.0;
    std::string label = strategy_name(s);
    if (s == ShardStrategy::kHybridShard) label += " (g=" + std::to_string(group) + ")";
    std::printf("%-22s %10.4f %10.4f %10.4f %11.4f %10.4f %10.4f %10.4f\n", label.c_str(), p.params / g,
                p.grads / g, p.optimizer / g, p.activations / g, p.buffers / g, p.workspace / g, p.total / g);
  }
  return 0;
}

}  // namespace llamaft
