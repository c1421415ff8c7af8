// FSDP (ZeRO-3 and friends) over any Communicator.
//
// Each unit's parameters are one flat buffer, padded to a multiple of the
// shard count and split evenly; a rank permanently holds only its shard of
// the fp32 master weights, the fp32 gradient and AdamW's two moments.
// Strategies reduce to two communicators: `shard` (params are gathered and
// gradients reduce-scattered over it) and `replica` (gradient shards are
// all-reduced over it):
//   full_shard     shard = world,           replica = self
//   shard_grad_op  as full_shard, but gathered params live from forward to backward
//   no_shard       shard = self,            replica = world   (DDP)
//   hybrid_shard   shard = groups of G,     replica = ranks with the same index in their group
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <algorithm>
#include <vector>

#include "backend/device_array.hpp"
#include "comm/communicator.hpp"
#include "model/llama.hpp"
#include "model/param_layout.hpp"
#include "optim/optimizer_shards.hpp"
#include "quant/quant.hpp"

namespace llamaft {

enum class ShardStrategy { kFullShard, kShardGradOp, kNoShard, kHybridShard };
ShardStrategy parse_strategy(const std::string& name);
const char* strategy_name(ShardStrategy s);

struct ShardGeometry {
  int64_t numel = 0;       // real elements in the unit
  int64_t padded = 0;      // numel rounded up to a multiple of the shard count
  int64_t shard_size = 0;  // padded / shard count
  int64_t begin = 0;       // this rank's shard: [begin, begin + shard_size) of the flat unit
};

// How the world splits into shard groups and replicas for a strategy.
struct MeshShape {
  int shard_size = 1, replica_size = 1;
  int shard_index = 0, replica_index = 0;  // this rank's position in each
};
MeshShape mesh_for(ShardStrategy s, int world_size, int world_rank, int shard_group_size);

// Calls fn(slot, elem_in_tensor, count, offset_in_shard) for every piece of a
// tensor that falls inside this rank's shard of `unit`.
template <typename Fn>
inline void for_each_piece(const Unit& unit, const ShardGeometry& g, Fn&& fn) {
  const int64_t lo = g.begin, hi = g.begin + g.shard_size;
  for (const auto& slot : unit.tensors) {
    const int64_t a = std::max(lo, slot.offset), b = std::min(hi, slot.offset + slot.numel());
    if (a < b) fn(slot, a - slot.offset, b - a, a - lo);
  }
}

// How Fsdp shards and stores the units.
struct FsdpOptions {
  ShardStrategy strategy = ShardStrategy::kFullShard;
  int shard_group_size = 0;  // hybrid_shard's shard group; 0: the ranks of a node
  // int8 or nf4: frozen block units are stored quantized (a
  // quant::UnitCodec over the shard ranks); their shards are the quantized
  // words, gathered as they are and dequantized per unit in params().
  quant::Kind base_quant = quant::Kind::kNone;
  // train.param_dtype = bf16 (torch FSDP's MixedPrecision param_dtype):
  // every other unit's fp32 master shard is rounded to bf16 before its
  // all-gather (half the bytes travel); params() widens it back to fp32
  // (the CPU backend), params_bf16() keeps it bf16 (bf16 storage). Either
  // way compute sees bf16-rounded weights at any shard count; gradients,
  // their reduction and AdamW stay fp32.
  bool bf16_params = false;
  // fsdp.reduce_dtype = bf16 (torch's MixedPrecision reduce_dtype): each
  // unit's fp32 gradient is rounded to bf16 before its reduce-scatter (half
  // the bytes), summed in bf16 and widened into the fp32 gradient shard. The
  // replicas' once-a-step all-reduce stays fp32.
  bool bf16_reduce = false;
};

class Fsdp final : public UnitAccess, public OptimizerShards {
 public:
  Fsdp(const ParamLayout& layout, Backend& be, Communicator& world, const FsdpOptions& options);
  ~Fsdp() override;

  // ---- UnitAccess (called by the model) -----------------------------------------
  const float* params(int unit) override;
  // bf16_params only: the unit in bf16, for a model with bf16 storage. The
  // gathered words are the unit itself when shards hold an even number of
  // elements (else one strided copy compacts them); a quantized unit is
  // dequantized straight to bf16.
  const bf16* params_bf16(int unit) override;
  void prefetch(int unit) override;
  void release(int unit) override;
  float* grads(int unit) override;
  void grads_done(int unit) override;

  // ---- training-loop hooks --------------------------------------------------------
  void zero_grad_shards();
  void end_backward();  // frees params kept for backward (shard_grad_op)
  void wait_gradients();  // completes every in-flight reduction
  // The all-reduce of the gradient shards across replicas (no_shard,
  // hybrid_shard), once per step after the last micro-batch, as DDP's no_sync
  // accumulation does: micro-batches accumulate locally in between.
  // adamw_step calls it; a no-op with one replica or nothing pending.
  void sync_replicas() override;

  // ---- state ------------------------------------------------------------------------
  const ParamLayout& layout() const { return layout_; }
  const ShardGeometry& geometry(int unit) const { return geom_[unit]; }
  // ---- OptimizerShards (called by adamw_step) ------------------------------------
  int num_units() const override { return static_cast<int>(geom_.size()); }
  bool trainable(int unit) const override { return layout_.units()[unit].trainable; }
  int64_t shard_numel(int unit) const override { return geom_[unit].shard_size; }
  float* master(int unit) override { return master_[unit].data(); }
  // The master shard, read only.
  const float* master_view(int unit) const { return master_[unit].data(); }
  float* grad_shard(int unit) override { return grad_[unit].data(); }
  float* exp_avg(int unit) override { return m_[unit].data(); }
  float* exp_avg_sq(int unit) override { return v_[unit].data(); }
  Communicator& shard_comm() override { return *shard_comm_; }

  // The codec of a quantized unit, or null (its master shard is then fp32).
  const quant::UnitCodec* codec(int unit) const { return codec_[unit].get(); }
  quant::Kind base_quant() const { return base_quant_; }
  bool bf16_params() const { return bf16_params_; }
  bool bf16_reduce() const { return bf16_reduce_; }
  ShardStrategy strategy() const { return strategy_; }
  const MeshShape& mesh() const { return mesh_; }
  Communicator& replica_comm() { return *replica_comm_; }
  Communicator& world() { return world_; }
  // Whether this rank writes its shard when exporting (replica 0 only).
  bool writes_exports() const { return mesh_.replica_index == 0; }

  // Bytes held on this rank.
  size_t param_bytes() const;
  size_t grad_bytes() const;
  size_t optimizer_bytes() const;
  size_t peak_buffer_bytes() const { return peak_buffer_bytes_; }
  // Communication totals of both communicators.
  CommStats comm_totals() const;

 private:
  struct Gathered;
  struct PendingReduce;
  Gathered& start_gather(int unit);
  Gathered& completed_gather(int unit);  // started now if prefetch did not, and waited for
  void drop(Gathered& g);  // waits, and returns its buffers to the pool
  float* take_buffer(int64_t n);
  void give_buffer(float* p);
  void finish_reduce(PendingReduce& p);

  const ParamLayout& layout_;
  Backend& be_;
  Communicator& world_;
  ShardStrategy strategy_;
  MeshShape mesh_;
  std::unique_ptr<Communicator> shard_comm_, replica_comm_;
  quant::Kind base_quant_ = quant::Kind::kNone;
  bool bf16_params_ = false;
  bool bf16_reduce_ = false;
  bool gathers(int unit) const { return mesh_.shard_size > 1 || codec_[unit] || bf16_params_; }
  std::vector<std::shared_ptr<const quant::UnitCodec>> codec_;  // shared by units of one layout
  std::vector<ShardGeometry> geom_;
  std::vector<DeviceArray<float>> master_, grad_, m_, v_;
  std::map<int, std::unique_ptr<Gathered>> gathered_;         // unit -> gathered params
  std::map<int, float*> grad_full_;                           // unit -> full gradient buffer
  std::vector<std::unique_ptr<PendingReduce>> pending_;
  std::vector<std::pair<int64_t, std::unique_ptr<DeviceArray<float>>>> free_buffers_;
  std::map<float*, std::unique_ptr<DeviceArray<float>>> used_buffers_;
  size_t buffer_bytes_ = 0, peak_buffer_bytes_ = 0;
  bool in_backward_ = false;
  bool replicas_pending_ = false;  // gradient shards not yet all-reduced across replicas
};

}  // namespace llamaft
