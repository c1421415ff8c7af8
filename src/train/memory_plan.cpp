// plan_memory: runs the real training step (model + FSDP, one micro-batch of
// full rows) on a counting backend, which allocates nothing but counts bytes,
// and a stand-in communicator (NullComm) that moves nothing and reports the
// mesh's sizes, so the numbers are the code's own allocations at any np
// without any rank existing.
#include "train/memory_plan.hpp"

#include <algorithm>
#include <memory>
#include <vector>

#include "backend/device_array.hpp"
#include "checkpoint/checkpoint.hpp"
#include "comm/null_comm.hpp"
#include "core/error.hpp"
#include "model/llama.hpp"
#include "parallel/fsdp_io.hpp"

namespace llamaft {


MemoryPlan plan_memory(const LlamaConfig& mc, const PlanInputs& in) {
  const int micro_batch = in.micro_batch, seq_len = in.seq_len;
  auto be = make_counting_backend(in.bf16_storage);
  const MeshShape mesh = mesh_for(in.fsdp.strategy, in.world, 0, in.fsdp.shard_group_size);
  NullComm comm(in.world, 0, {mesh.shard_size, mesh.replica_size});
  ModelOptions opts;
  opts.activation_checkpointing = in.activation_checkpointing;
  opts.lora = in.lora;
  opts.bf16_storage = in.bf16_storage;
  LlamaModel model(mc, *be, opts);
  Fsdp fsdp(model.layout(), *be, comm, in.fsdp);
  MemoryPlan p;
  // Loading: everything resident so far, plus the loader's staging (see
  // load_sharded): the largest of the units' windows.
  const size_t resident = be->live_bytes();
  for (int u = 0; u < model.layout().num_units(); ++u) {
    if (model.layout().units()[u].kind == UnitKind::kLora) continue;
    const int64_t shard = fsdp.geometry(u).shard_size;
    const size_t staging = fsdp.codec(u) ? static_cast<size_t>(shard) * sizeof(float) + kLoadItemBytes
                                         : static_cast<size_t>(std::min(shard, kLoadWindowFloats)) * sizeof(float);
    p.load_scratch = std::max(p.load_scratch, staging + kLoadReadBufferBytes);
  }
  p.load = resident + p.load_scratch;
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
  p.step = be->peak_bytes() - 3 * n * sizeof(int32_t);
  p.workspace = p.step - p.params - p.grads - p.optimizer - p.activations - p.buffers;
  if (in.host_resident) {
    if (in.async_checkpoint) p.checkpoint_staging = CheckpointManager::staging_bytes_for(fsdp);
    p.checkpoint = p.step - p.activations + p.checkpoint_staging;
  }
  p.total = std::max({p.load, p.step + p.checkpoint_staging, p.checkpoint});
  (void)before;
  return p;
}

}  // namespace llamaft
