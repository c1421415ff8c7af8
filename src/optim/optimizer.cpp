#include "optim/optimizer.hpp"

#include <cmath>
#include <vector>

#include "backend/row_math.hpp"
#include "core/error.hpp"

namespace llamaft {

double learning_rate(const OptimizerConfig& c, int64_t step) {
  if (step < c.warmup_steps) return c.lr * static_cast<double>(step) / static_cast<double>(c.warmup_steps);
  if (c.schedule == "constant") return c.lr;
  const double span = static_cast<double>(std::max<int64_t>(1, c.total_steps - c.warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - c.warmup_steps) / span);
  double mult = 1.0;
  if (c.schedule == "linear") mult = 1.0 - progress;
  else if (c.schedule == "cosine") mult = 0.5 * (1.0 + std::cos(M_PI * progress));
  else LLAMAFT_FAIL("unknown train.lr_schedule '", c.schedule, "' (constant|linear|cosine)");
  return c.min_lr + (c.lr - c.min_lr) * mult;
}

StepResult adamw_step(OptimizerShards& state, Backend& be, const OptimizerConfig& c, int64_t step) {
  StepResult r;
  state.sync_replicas();  // gradients accumulated locally over the micro-batches meet across replicas here
  std::vector<const float*> grads;
  std::vector<size_t> sizes;
  std::vector<Backend::AdamWShard> shards;
  for (int u = 0; u < state.num_units(); ++u) {
    if (!state.trainable(u)) continue;  // a frozen base has no optimizer state
    const size_t n = static_cast<size_t>(state.shard_numel(u));
    grads.push_back(state.grad_shard(u));
    sizes.push_back(n);
    shards.push_back({state.master(u), state.exp_avg(u), state.exp_avg_sq(u), state.grad_shard(u), n});
  }
  double sq = be.sum_squares_many(grads.data(), sizes.data(), static_cast<int>(grads.size()));
  // Shards are disjoint within a shard group and identical across replicas.
  state.shard_comm().all_reduce_sum(&sq, 1);
  r.grad_norm = std::sqrt(sq);
  r.lr = learning_rate(c, step);
  r.finite = std::isfinite(r.grad_norm);
  if (!r.finite) return r;

  // clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1, always applied.
  float clip = 1.f;
  if (c.max_grad_norm > 0) clip = static_cast<float>(std::min(1.0, c.max_grad_norm / (r.grad_norm + 1e-6)));
  const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(step + 1));
  const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(step + 1));
  rowmath::AdamWParams a;
  a.beta1 = static_cast<float>(c.beta1);
  a.beta2 = static_cast<float>(c.beta2);
  a.eps = static_cast<float>(c.eps);
  a.decay_mult = static_cast<float>(1.0 - r.lr * c.weight_decay);
  a.step_size = static_cast<float>(r.lr / bc1);
  a.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  a.grad_scale = clip;
  // The updated weights must be finite everywhere: their sum of squares,
  // from AdamW's own pass where the backend can.
  double wsq = be.adamw_many(shards.data(), static_cast<int>(shards.size()), a);
  state.shard_comm().all_reduce_sum(&wsq, 1);
  r.weights_finite = std::isfinite(wsq);
  return r;
}

}  // namespace llamaft
