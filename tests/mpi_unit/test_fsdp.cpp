// Fsdp's two collectives against values the test computes itself: the
// all-gather in params() returns exactly the logical unit whatever the shard
// count, and the reduce-scatter (plus the replica all-reduce for no_shard)
// leaves on each rank exactly the sum over ranks, and over micro-batches, of
// the full gradients the ranks contributed, restricted to its shard.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "mpi_unit_util.hpp"
#include "parallel/fsdp.hpp"

namespace llamaft {
namespace {

using mpi_unit::cpu;
using mpi_unit::dyadic;
using mpi_unit::irregular;
using mpi_unit::world;

class FsdpCollectives : public ::testing::TestWithParam<ShardStrategy> {};

}  // namespace

void PrintTo(ShardStrategy s, std::ostream* os) { *os << strategy_name(s); }

namespace {

TEST_P(FsdpCollectives, GatherReturnsTheLogicalUnit) {
  const ParamLayout layout(mpi_unit::small_config());
  Fsdp fsdp(layout, cpu(), world(), FsdpOptions{GetParam()});
  for (int u = 0; u < fsdp.num_units(); ++u) {
    const ShardGeometry& g = fsdp.geometry(u);
    float* shard = fsdp.master(u);
    for (int64_t j = 0; j < g.shard_size; ++j)
      shard[j] = g.begin + j < g.numel ? irregular(u, g.begin + j, 0) : 0.f;
  }
  int64_t checked = 0;
  for (int u = 0; u < fsdp.num_units(); ++u) {
    const float* full = fsdp.params(u);
    const int64_t n = layout.units()[u].numel;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) bad += full[i] != irregular(u, i, 0);
    EXPECT_EQ(bad, 0) << "unit " << layout.units()[u].name << " of " << n << " elements, np " << world().size();
    EXPECT_NE(full[n - 1], 0.f);  // the last element arrived (not padding, not left zero)
    checked += n;
    fsdp.release(u);
  }
  EXPECT_EQ(checked, layout.total_numel());
}

TEST_P(FsdpCollectives, ReduceScatterSumsRanksAndMicroBatches) {
  const ParamLayout layout(mpi_unit::small_config());
  Fsdp fsdp(layout, cpu(), world(), FsdpOptions{GetParam()});
  const int ranks = world().size(), me = world().rank();
  fsdp.zero_grad_shards();
  const int micro_batches = 2;
  for (int mb = 0; mb < micro_batches; ++mb) {
    // Backward order (head first), as the model calls it.
    for (int u = fsdp.num_units() - 1; u >= 0; --u) {
      float* full = fsdp.grads(u);  // accumulated into, as the model does (one shard: the shard itself)
      for (int64_t i = 0; i < layout.units()[u].numel; ++i) full[i] += dyadic(u, i, 10 * me + mb);
      fsdp.grads_done(u);
    }
    fsdp.end_backward();
  }
  fsdp.sync_replicas();
  for (int u = 0; u < fsdp.num_units(); ++u) {
    const ShardGeometry& g = fsdp.geometry(u);
    const float* shard = fsdp.grad_shard(u);
    int64_t bad = 0, nonzero = 0;
    for (int64_t j = 0; j < g.shard_size; ++j) {
      const int64_t i = g.begin + j;
      double want = 0;  // dyadic values: the float sum is exact in any order
      if (i < g.numel)
        for (int r = 0; r < ranks; ++r)
          for (int mb = 0; mb < micro_batches; ++mb) want += dyadic(u, i, 10 * r + mb);
      bad += static_cast<double>(shard[j]) != want;
      nonzero += shard[j] != 0.f;
    }
    EXPECT_EQ(bad, 0) << "unit " << layout.units()[u].name << ", shard [" << g.begin << ", "
                      << g.begin + g.shard_size << "), np " << ranks;
    EXPECT_GT(nonzero, 0);
  }
}

// fsdp.reduce_dtype = bf16: each rank's contribution is rounded to bf16
// (relative error at most u = 2^-8) and every partial sum of the ranks is
// rounded again (at most u times the sum of magnitudes each), so the shard
// is within (ranks + 1) * u * sum |terms| of the exact sum, per micro-batch;
// the micro-batches then add in fp32. Half the reduce-scatter bytes of fp32.
TEST_P(FsdpCollectives, Bf16ReduceScatterIsTheSumToBf16Rounding) {
  const ParamLayout layout(mpi_unit::small_config());
  const int ranks = world().size(), me = world().rank();
  uint64_t bytes[2] = {0, 0};
  for (bool bf16 : {false, true}) {
    FsdpOptions options{GetParam()};
    options.bf16_reduce = bf16;
    Fsdp fsdp(layout, cpu(), world(), options);
    fsdp.zero_grad_shards();
    const uint64_t before = fsdp.comm_totals().reduce_scatter_bytes;
    const int micro_batches = 2;
    for (int mb = 0; mb < micro_batches; ++mb) {
      for (int u = fsdp.num_units() - 1; u >= 0; --u) {
        float* full = fsdp.grads(u);
        for (int64_t i = 0; i < layout.units()[u].numel; ++i) full[i] += irregular(u, i, 10 * me + mb);
        fsdp.grads_done(u);
      }
      fsdp.end_backward();
    }
    fsdp.sync_replicas();
    bytes[bf16] = fsdp.comm_totals().reduce_scatter_bytes - before;
    const bool reduced = fsdp.mesh().shard_size > 1;
    int64_t bad = 0, rounded = 0;
    for (int u = 0; u < fsdp.num_units(); ++u) {
      const ShardGeometry& g = fsdp.geometry(u);
      const float* shard = fsdp.grad_shard(u);
      for (int64_t j = 0; j < g.shard_size && g.begin + j < g.numel; ++j) {
        double want = 0, mag = 0;
        for (int r = 0; r < ranks; ++r)
          for (int mb = 0; mb < micro_batches; ++mb) {
            const double x = irregular(u, g.begin + j, 10 * r + mb);
            want += x;
            mag += std::abs(x);
          }
        const double err = std::abs(double(shard[j]) - want);
        const double bound = (bf16 && reduced ? (ranks + 1) * 0x1p-8 : 0.0) * mag + 0x1p-22 * mag;
        bad += err > bound;
        rounded += err > 0x1p-20 * mag;
      }
    }
    EXPECT_EQ(bad, 0) << (bf16 ? "bf16" : "fp32") << " reduce, np " << ranks;
    if (bf16 && reduced) {
      EXPECT_GT(rounded, 0) << "a bf16 reduction that rounds nothing is not bf16";
    }
  }
  if (bytes[0] > 0) {
    EXPECT_EQ(2 * bytes[1], bytes[0]) << "bf16 moves half the reduce-scatter bytes";
  }
}

TEST_P(FsdpCollectives, ShardsPartitionEachUnit) {
  const ParamLayout layout(mpi_unit::small_config());
  Fsdp fsdp(layout, cpu(), world(), FsdpOptions{GetParam()});
  const MeshShape& mesh = fsdp.mesh();
  EXPECT_EQ(mesh.shard_size * mesh.replica_size, world().size());
  for (int u = 0; u < fsdp.num_units(); ++u) {
    const ShardGeometry& g = fsdp.geometry(u);
    EXPECT_EQ(g.padded, g.shard_size * mesh.shard_size);
    EXPECT_GE(g.padded, g.numel);
    EXPECT_LT(g.padded - g.numel, mesh.shard_size);
    // Every element is owned by exactly one shard index: the begins over the
    // shard communicator are 0, s, 2s, ...
    int64_t begin = g.begin;
    std::vector<double> begins(static_cast<size_t>(world().size()), 0.0);
    begins[static_cast<size_t>(world().rank())] = static_cast<double>(begin);
    world().all_reduce_sum(begins.data(), begins.size());
    for (int r = 0; r < world().size(); ++r)
      EXPECT_EQ(begins[r], static_cast<double>((r % mesh.shard_size) * g.shard_size)) << "rank " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Strategies, FsdpCollectives,
                         ::testing::Values(ShardStrategy::kFullShard, ShardStrategy::kShardGradOp,
                                           ShardStrategy::kNoShard),
                         [](const ::testing::TestParamInfo<ShardStrategy>& info) {
                           return std::string(strategy_name(info.param));
                         });

}  // namespace
}  // namespace llamaft
