// Trainer::step in process, at whatever np the binary runs under (ctest runs
// it at 1 and 2): the first step's loss equals the mean loss of the global
// batch computed independently on one process with every weight resident
// (no FSDP, no sharding), the token counts equal those counted from the data,
// the learning rate follows the warmup formula, and the weights move.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "backend/registry.hpp"
#include "comm/communicator.hpp"
#include "core/rng.hpp"
#include "model/device_batch.hpp"
#include "model/hf_model.hpp"
#include "train/trainer.hpp"
#include "mpi_unit_util.hpp"

namespace llamaft {
namespace {

constexpr int kRows = 16, kGlobal = 4, kSteps = 3;

std::string shared_dir(const std::string& name) {
  // The same folder on every rank (one host): rank 0 makes it.
  const std::string dir = std::filesystem::temp_directory_path().string() + "/llamaft_trainer_test_" +
                          std::to_string(mpi_unit::world().size()) + "_" + name;
  return dir;
}

std::vector<std::vector<int32_t>> rows_of_data() {
  std::vector<std::vector<int32_t>> rows;
  for (int i = 0; i < kRows; ++i) {
    std::vector<int32_t> r;
    for (int t = 0; t < 6 + (i * 5) % 11; ++t) r.push_back((i * 37 + t * 11) % 1000 + 3);
    rows.push_back(r);
  }
  return rows;
}

struct Fixture {
  std::string model, data, out;
};

Fixture make_inputs(Communicator& world) {
  Fixture f{shared_dir("model"), shared_dir("data.jsonl"), shared_dir("out")};
  if (world.rank() == 0) {
    std::filesystem::remove_all(f.out);
    const LlamaConfig cfg = preset_config("tiny");
    const ParamLayout layout(cfg);
    save_hf_model(f.model, cfg, layout, false, [&](const TensorSlot& slot, float* dst) {
      Rng rng(7, std::hash<std::string>{}(slot.hf_name));
      for (int64_t i = 0; i < slot.numel(); ++i) dst[i] = slot.shape.size() == 1 ? 1.f : 0.02f * rng.normal();
    });
    std::ofstream d(f.data);
    for (const auto& r : rows_of_data()) {
      d << "{\"input_ids\": [";
      for (size_t t = 0; t < r.size(); ++t) d << (t ? "," : "") << r[t];
      d << "]}\n";
    }
  }
  world.barrier();
  return f;
}

Config config_for(const Fixture& f) {
  Config cfg;
  cfg.set("model.path", f.model, "test");
  cfg.set("data.path", f.data, "test");
  cfg.set("data.seq_len", "32", "test");
  cfg.set("output.dir", f.out, "test");
  cfg.set("output.progress", "false", "test");
  cfg.set("output.export", "false", "test");
  cfg.set("checkpoint.at_end", "false", "test");
  cfg.set("checkpoint.resume", "none", "test");
  cfg.set("train.global_batch_size", std::to_string(kGlobal), "test");
  cfg.set("train.steps", std::to_string(kSteps), "test");
  cfg.set("train.lr", "1e-3", "test");
  cfg.set("train.warmup_steps", "2", "test");
  return cfg;
}

TEST(Trainer, StepMatchesAResidentOneProcessReference) {
  const Fixture f = make_inputs(mpi_unit::world());
  const Config cfg = config_for(f);
  Trainer trainer(cfg, [] { return make_backend("cpu"); });

  // The reference: the first global batch (rows 0..G-1, no shuffle) through
  // the same weights held resident by one process.
  auto be = make_backend("cpu");
  ResidentModel ref = load_resident_model(f.model, "", *be);
  const TokenDataset ds = load_dataset(f.data, "tokens", 32, ref.config.vocab_size);
  const std::vector<int64_t> first{0, 1, 2, 3};
  DeviceBatch dev(*be);
  const LossSum want = ref.model->forward_loss(dev.upload(make_batch(ds, first.data(), first.size())), *ref.params);
  double input_tokens = 0;
  for (int64_t r : first) input_tokens += static_cast<double>(ds.rows[r].input_ids.size());

  // Unit 1 is block 0: every one of its weights gets a gradient (the
  // embedding's rows on one rank may see no token of these batches).
  const float* master = trainer.fsdp().master(1);
  const std::vector<float> initial(master, master + trainer.fsdp().geometry(1).shard_size);
  const StepMetrics m1 = trainer.step();
  EXPECT_EQ(m1.step, 1);
  EXPECT_EQ(m1.target_tokens, static_cast<double>(want.tokens));
  EXPECT_EQ(m1.input_tokens, input_tokens);
  // fp32 sums in another order (per rank, then across ranks): a few ulps.
  EXPECT_NEAR(m1.loss, want.loss_sum / static_cast<double>(want.tokens), 1e-6 * m1.loss);
  EXPECT_EQ(m1.lr, 0.0);  // warmup: step s runs at lr * s / warmup, so step 1 at 0
  EXPECT_FALSE(m1.skipped);
  EXPECT_TRUE(std::isfinite(m1.grad_norm) && m1.grad_norm > 0);

  EXPECT_TRUE(std::equal(initial.begin(), initial.end(), master)) << "lr 0 must leave the weights as they were";
  const StepMetrics m2 = trainer.step();
  EXPECT_FALSE(std::equal(initial.begin(), initial.end(), master)) << "step 2 (lr > 0) must move the weights";
  EXPECT_EQ(m2.step, 2);
  EXPECT_DOUBLE_EQ(m2.lr, 1e-3 * 1 / 2);
  // Step 1 ran at lr 0: the weights (and so the loss of the same rows in
  // step 1's batch) are unchanged; step 2 reads rows 4..7, a new batch.
  EXPECT_NE(m2.loss, m1.loss);
  const StepMetrics m3 = trainer.step();
  EXPECT_DOUBLE_EQ(m3.lr, 1e-3);
  EXPECT_EQ(trainer.state().step, 3);
  EXPECT_EQ(trainer.state().consumed_rows, 3 * kGlobal);
}

}  // namespace
}  // namespace llamaft
