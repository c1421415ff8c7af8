// What the optimizer needs from whoever holds the sharded training state:
// per unit, this rank's shard of the fp32 master weights, of the gradient
// and of AdamW's two moments, plus the communicator over which the shards
// of one replica are disjoint. optim/ defines it so that it depends on no
// sharding scheme; parallel/'s Fsdp implements it (the same inversion as
// the model's UnitAccess), and tests implement it over plain buffers.
#pragma once

#include <cstdint>

#include "comm/communicator.hpp"

namespace llamaft {

class OptimizerShards {
 public:
  virtual int num_units() const = 0;
  // false: a frozen unit (the base under LoRA): no gradient, no moments.
  virtual bool trainable(int unit) const = 0;
  // Elements in this rank's shard of `unit`; the buffers below hold that many
  // (in the backend's memory space).
  virtual int64_t shard_numel(int unit) const = 0;
  virtual float* master(int unit) = 0;
  virtual float* grad_shard(int unit) = 0;
  virtual float* exp_avg(int unit) = 0;
  virtual float* exp_avg_sq(int unit) = 0;
  // Sums over it give global norms: shards are disjoint within it and
  // identical across replicas.
  virtual Communicator& shard_comm() = 0;
  // Completes the gradient's reduction across replicas before it is read
  // (a no-op with one replica).
  virtual void sync_replicas() = 0;

 protected:
  ~OptimizerShards() = default;  // not owned through this interface
};

}  // namespace llamaft
