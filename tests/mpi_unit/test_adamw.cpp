// adamw_step against the published update, computed here in double:
// torch.nn.utils.clip_grad_norm_ (total L2 norm over every shard of every
// rank, coef = max_norm / (norm + 1e-6) clamped to 1) and torch.optim.AdamW
// (Loshchilov & Hutter's decoupled weight decay, p <- p (1 - lr wd), then
// m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
// p <- p - lr m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - b1^t),
// v_hat = v / (1 - b2^t), eps after the square root).
//
// The state is sharded over the ranks through OptimizerShards, as Fsdp
// shards it (equal padded shards); a frozen unit must stay untouched.
//
// Tolerance, from fp32 rounding (u = 2^-24), per element, after t <= 4 steps.
// Gradients keep one sign per element across steps, so m and v are sums of
// same-signed terms and their errors are relative:
//   g:  the float clipping coefficient and the product: 2u;
//   m:  1 - float(beta1 = 0.9) is 0.1 to 4u; beta1's powers t u; a product
//       and a sum per step 3t u; with g's 2u: 6u + 4t u <= 22u;
//   v:  1 - float(beta2 = 0.99) is 0.01 to 16u (AdamWParams keeps the betas
//       in fp32); g^2 4u + 1u; powers and roundings 4t u: <= 37u;
//   denominator sqrt(v) / float(sqrt(bc2)) + float(eps): 37u / 2 + 4u <= 23u;
//   update float(lr / bc1) * m / denominator: 22u + 23u + 3u = 48u,
// so kUpdateUlps = 64. The parameter: the float decay factor, its product
// and the final sum, 3u |p|. Hence |err_t| <= |err_{t-1}| + 3u |p_t| +
// 64u |update_t|, accumulated below; measured errors stay well inside it
// (the test records the largest ratio). Each hyper-parameter changes the
// result by far more: eps is as large as sqrt(v_hat), weight decay moves p
// by lr wd |p| per step, the bias corrections differ from 1 by 10-34 %, and
// the second step is clipped.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "mpi_unit_util.hpp"
#include "optim/optimizer.hpp"

namespace llamaft {
namespace {

using mpi_unit::cpu;
using mpi_unit::world;

constexpr double kU = 1.0 / (1 << 24);
constexpr double kUpdateUlps = 64;

// Units of uneven length split over the ranks in equal padded shards.
class HostShards final : public OptimizerShards {
 public:
  HostShards(std::vector<int64_t> lengths, std::vector<bool> trainable, Communicator& comm)
      : lengths_(std::move(lengths)), trainable_(std::move(trainable)), comm_(comm) {
    for (int64_t n : lengths_) {
      const int64_t shard = (n + comm.size() - 1) / comm.size();
      shard_.push_back(shard);
      begin_.push_back(shard * comm.rank());
      for (auto* a : {&p_, &g_, &m_, &v_}) a->emplace_back(static_cast<size_t>(shard), 0.f);
    }
  }
  int num_units() const override { return static_cast<int>(lengths_.size()); }
  bool trainable(int u) const override { return trainable_[u]; }
  int64_t shard_numel(int u) const override { return shard_[u]; }
  float* master(int u) override { return p_[u].data(); }
  float* grad_shard(int u) override { return g_[u].data(); }
  float* exp_avg(int u) override { return m_[u].data(); }
  float* exp_avg_sq(int u) override { return v_[u].data(); }
  Communicator& shard_comm() override { return comm_; }
  void sync_replicas() override { ++syncs; }

  int64_t length(int u) const { return lengths_[u]; }
  int64_t begin(int u) const { return begin_[u]; }
  int syncs = 0;

 private:
  std::vector<int64_t> lengths_, shard_, begin_;
  std::vector<bool> trainable_;
  Communicator& comm_;
  std::vector<std::vector<float>> p_, g_, m_, v_;
};

// Logical values, the same at every rank count. Gradients keep their sign
// across steps (see the tolerance above) and have magnitudes near eps.
float initial_param(int u, int64_t i) { return static_cast<float>(0.5 * std::sin(0.37 * i + u) + 0.01 * (u + 1)); }
double grad_value(int u, int64_t i, int step) {
  const double sign = ((i * 7 + u) % 3 == 0) ? -1.0 : 1.0;
  return sign * 1e-3 * (1.0 + 0.5 * std::cos(0.11 * i + u)) * (1.0 + 0.7 * step) * (step == 1 ? 40.0 : 1.0);
}

struct Reference {  // one element's state in double
  double p, m = 0, v = 0, bound = 0;
};

TEST(AdamW, MatchesThePublishedUpdateOnShards) {
  const std::vector<int64_t> lengths = {37, 5, 64, 19};
  const std::vector<bool> trainable = {true, true, false, true};
  HostShards shards(lengths, trainable, world());
  OptimizerConfig c;
  c.lr = 1e-2;
  c.weight_decay = 0.1;
  c.beta1 = 0.9;
  c.beta2 = 0.99;
  c.eps = 1e-3;
  c.max_grad_norm = 0.05;  // clips step 1 (the second) only: its gradients are 40x larger
  c.total_steps = 4;

  std::vector<std::vector<Reference>> ref(lengths.size());
  for (int u = 0; u < shards.num_units(); ++u) {
    for (int64_t i = 0; i < lengths[u]; ++i) ref[u].push_back({static_cast<double>(initial_param(u, i))});
    for (int64_t j = 0; j < shards.shard_numel(u); ++j) {
      const int64_t i = shards.begin(u) + j;
      shards.master(u)[j] = i < lengths[u] ? initial_param(u, i) : 0.f;
    }
  }
  int clipped_steps = 0;
  for (int step = 0; step < 4; ++step) {
    // The gradients, as fp32 shards; the reference reads the same fp32 values.
    double sq = 0;
    for (int u = 0; u < shards.num_units(); ++u) {
      if (!trainable[u]) continue;
      for (int64_t i = 0; i < lengths[u]; ++i) {
        const double g = static_cast<float>(grad_value(u, i, step));
        sq += g * g;
      }
      for (int64_t j = 0; j < shards.shard_numel(u); ++j) {
        const int64_t i = shards.begin(u) + j;
        shards.grad_shard(u)[j] = i < lengths[u] ? static_cast<float>(grad_value(u, i, step)) : 0.f;
      }
    }
    const double norm = std::sqrt(sq);
    const double coef = std::min(1.0, c.max_grad_norm / (norm + 1e-6));
    clipped_steps += coef < 1.0;
    const int t = step + 1;
    const double bc1 = 1 - std::pow(c.beta1, t), bc2 = 1 - std::pow(c.beta2, t);
    for (int u = 0; u < shards.num_units(); ++u) {
      if (!trainable[u]) continue;
      for (int64_t i = 0; i < lengths[u]; ++i) {
        Reference& r = ref[u][i];
        const double g = static_cast<double>(static_cast<float>(grad_value(u, i, step))) * coef;
        r.p *= 1 - c.lr * c.weight_decay;
        r.m = c.beta1 * r.m + (1 - c.beta1) * g;
        r.v = c.beta2 * r.v + (1 - c.beta2) * g * g;
        const double update = c.lr * (r.m / bc1) / (std::sqrt(r.v / bc2) + c.eps);
        r.p -= update;
        r.bound += 3 * kU * std::abs(r.p) + kUpdateUlps * kU * std::abs(update);
      }
    }

    const StepResult res = adamw_step(shards, cpu(), c, step);
    ASSERT_TRUE(res.finite);
    EXPECT_TRUE(res.weights_finite);
    EXPECT_NEAR(res.grad_norm, norm, 1e-12 * norm) << "step " << step;
    EXPECT_DOUBLE_EQ(res.lr, c.lr);
    EXPECT_EQ(shards.syncs, step + 1);

    int64_t bad = 0;
    double worst = 0;  // largest |error| / bound
    for (int u = 0; u < shards.num_units(); ++u)
      for (int64_t j = 0; j < shards.shard_numel(u); ++j) {
        const int64_t i = shards.begin(u) + j;
        const double got = shards.master(u)[j];
        if (i >= lengths[u]) {
          bad += got != 0.0;  // padding stays zero
          continue;
        }
        if (!trainable[u]) {
          bad += shards.master(u)[j] != initial_param(u, i);  // frozen: untouched, to the bit
          continue;
        }
        const Reference& r = ref[u][i];
        const double err = std::abs(got - r.p);
        worst = std::max(worst, err / r.bound);
        if (err > r.bound) {
          if (bad < 5)
            ADD_FAILURE() << "step " << step << " unit " << u << " element " << i << ": got " << got << ", want "
                          << r.p << " (error " << err << " > bound " << r.bound << ")";
          ++bad;
        }
      }
    EXPECT_EQ(bad, 0) << "step " << step << ", rank " << world().rank();
    RecordProperty("worst_error_over_bound_step" + std::to_string(step), std::to_string(worst));
  }
  EXPECT_EQ(clipped_steps, 1);
}

TEST(AdamW, NonFiniteGradientSkipsTheUpdateOnEveryRank) {
  HostShards shards({11, 6}, {true, true}, world());
  for (int u = 0; u < 2; ++u)
    for (int64_t j = 0; j < shards.shard_numel(u); ++j) {
      shards.master(u)[j] = 1.f + static_cast<float>(j);
      shards.grad_shard(u)[j] = 0.5f;
    }
  // One element of the last rank's shard only: the norm is global, so every rank skips.
  if (world().rank() == world().size() - 1) shards.grad_shard(1)[0] = std::numeric_limits<float>::infinity();
  OptimizerConfig c;
  const StepResult res = adamw_step(shards, cpu(), c, 0);
  EXPECT_FALSE(res.finite);
  EXPECT_FALSE(std::isfinite(res.grad_norm));
  for (int u = 0; u < 2; ++u)
    for (int64_t j = 0; j < shards.shard_numel(u); ++j) {
      EXPECT_EQ(shards.master(u)[j], 1.f + static_cast<float>(j));
      EXPECT_EQ(shards.exp_avg(u)[j], 0.f);
      EXPECT_EQ(shards.exp_avg_sq(u)[j], 0.f);
    }
}

TEST(AdamW, LearningRateSchedules) {
  OptimizerConfig c;
  c.lr = 1e-3;
  c.min_lr = 1e-5;
  c.warmup_steps = 4;
  c.total_steps = 14;
  for (const char* schedule : {"constant", "linear", "cosine"}) {
    c.schedule = schedule;
    for (int64_t s = 0; s < 16; ++s) {
      double want;
      if (s < c.warmup_steps) {
        want = c.lr * s / c.warmup_steps;  // HF's LambdaLR warmup: step 0 runs at 0
      } else {
        const double progress = std::min(1.0, (s - c.warmup_steps) / 10.0);
        const double mult = c.schedule == "constant" ? 1.0
                            : c.schedule == "linear" ? 1.0 - progress
                                                     : 0.5 * (1.0 + std::cos(M_PI * progress));
        want = c.schedule == "constant" ? c.lr : c.min_lr + (c.lr - c.min_lr) * mult;
      }
      EXPECT_NEAR(learning_rate(c, s), want, 1e-15) << schedule << " step " << s;
    }
  }
}

}  // namespace
}  // namespace llamaft
