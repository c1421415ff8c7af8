// The whole model on the CUDA backend against the CPU backend, from the same
// weights and batch: logits, loss and every gradient of a small Llama (fp32
// GEMMs, and bf16 GEMMs with a bf16-sized tolerance), and three FSDP AdamW
// steps on one GPU for full fine-tuning and for QLoRA with LoRA dropout.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "backend/cuda/cuda_backend.hpp"
#include "comm/communicator.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "cuda_test_util.hpp"
#include "data/token_dataset.hpp"
#include "model/device_batch.hpp"
#include "model/llama.hpp"
#include "optim/optimizer.hpp"
#include "parallel/fsdp.hpp"

namespace llamaft::cuda_test {
namespace {

// One rank: FSDP issues no collectives at world size 1 (shard and replica
// groups of one), and the optimizer's host all-reduces are identities.
class SelfComm final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "self"; }
  RequestPtr all_gather(const float*, float*, size_t) override { LLAMAFT_FAIL("SelfComm: unexpected all_gather"); }
  RequestPtr reduce_scatter_sum(const float*, float*, size_t) override {
    LLAMAFT_FAIL("SelfComm: unexpected reduce_scatter");
  }
  void all_reduce_sum(float*, size_t) override {}
  void all_reduce_sum(double*, size_t) override {}
  void all_reduce_max(int64_t*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  std::unique_ptr<Communicator> split(int, int) override { return std::make_unique<SelfComm>(); }
};

LlamaConfig small_config() {
  LlamaConfig c = preset_config("tiny");
  c.vocab_size = 211;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  return c;
}

std::vector<std::vector<float>> random_units(const ParamLayout& layout, uint64_t seed) {
  std::vector<std::vector<float>> units;
  for (int u = 0; u < layout.num_units(); ++u) {
    Rng rng(seed, u);
    std::vector<float> w(layout.units()[u].numel);
    for (const auto& t : layout.units()[u].tensors)
      for (int64_t i = 0; i < t.numel(); ++i)
        w[t.offset + i] = t.shape.size() == 1 ? float(1 + 0.1 * rng.normal()) : float(0.1 * rng.normal());
    units.push_back(std::move(w));
  }
  return units;
}

HostBatch batch(int vocab, int seq) {
  static TokenRow a, b;
  Rng rng(17);
  a.input_ids.clear();
  b.input_ids.clear();
  for (int i = 0; i < seq; ++i) a.input_ids.push_back(int32_t(rng.next_u64() % vocab));
  for (int i = 0; i < seq - 5; ++i) b.input_ids.push_back(int32_t(rng.next_u64() % vocab));
  a.labels = a.input_ids;
  b.labels = b.input_ids;
  b.labels[2] = -100;
  return make_batch({&a, &b}, seq);
}

struct Outputs {
  std::vector<float> logits;
  double loss = 0;
  std::vector<std::vector<float>> grads;
};

Outputs run_model(Backend& be, const LlamaConfig& cfg, const std::vector<std::vector<float>>& w, const HostBatch& hb) {
  LlamaModel model(cfg, be);
  ResidentParams params(be, model.layout());
  for (int u = 0; u < params.num_units(); ++u)
    be.to_device(params.mutable_params(u), w[u].data(), w[u].size() * sizeof(float));
  DeviceBatch dev(be);
  const Batch b = dev.upload(hb);
  Outputs o;
  std::vector<float> logits(size_t(hb.batch) * hb.seq * cfg.vocab_size);
  model.forward_logits(b, params, logits.data());
  o.logits = logits;
  o.loss = model.forward_backward(b, params, 1.f / float(hb.target_tokens)).loss_sum / double(hb.target_tokens);
  for (int u = 0; u < params.num_units(); ++u) {
    std::vector<float> g(params.unit_numel(u));
    be.to_host(g.data(), params.grad_data(u), g.size() * sizeof(float));
    o.grads.push_back(std::move(g));
  }
  return o;
}

void compare(const Outputs& gpu, const Outputs& cpu, Tol logits_tol, Tol grad_tol, double loss_rel) {
  expect_close("logits", gpu.logits, cpu.logits, logits_tol);
  EXPECT_NEAR(gpu.loss, cpu.loss, loss_rel * cpu.loss);
  for (size_t u = 0; u < cpu.grads.size(); ++u) {
    // Gradients: per-unit tolerance relative to the unit's largest gradient.
    float scale = 0;
    for (float g : cpu.grads[u]) scale = std::max(scale, std::abs(g));
    expect_close("grad unit " + std::to_string(u), gpu.grads[u], cpu.grads[u],
                 Tol{grad_tol.atol * scale, grad_tol.rtol});
  }
}

TEST(CudaModel, LogitsLossAndGradientsMatchCpu) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  const LlamaConfig cfg = small_config();
  const auto w = random_units(ParamLayout(cfg), 5);
  const HostBatch hb = batch(int(cfg.vocab_size), 23);
  auto cpu = make_cpu_backend();
  auto gpu = make_cuda_backend(0, kTestPoolBytes);
  const Outputs want = run_model(*cpu, cfg, w, hb);
  compare(run_model(*gpu, cfg, w, hb), want, Tol{1e-4, 1e-4}, Tol{1e-4, 1e-3}, 1e-5);
  // bf16 GEMMs: 8-bit mantissas, fp32 accumulation.
  dynamic_cast<CudaBackend&>(*gpu).set_bf16_gemm(true);
  compare(run_model(*gpu, cfg, w, hb), want, Tol{5e-2, 5e-2}, Tol{5e-2, 5e-2}, 1e-2);
}

// Three AdamW steps through Fsdp (full_shard on one rank) on each backend.
std::vector<std::vector<float>> train_steps(Backend& be, const LlamaConfig& cfg, const ModelOptions& opts,
                                            quant::Kind base_quant, const HostBatch& hb_in) {
  LlamaModel model(cfg, be, opts);
  SelfComm comm;
  Fsdp fsdp(model.layout(), be, comm, ShardStrategy::kFullShard, 0, base_quant);
  const auto w = random_units(model.layout(), 6);
  for (int u = 0; u < fsdp.num_units(); ++u) {
    std::vector<float> shard(fsdp.geometry(u).shard_size, 0.f);
    if (const quant::UnitCodec* codec = fsdp.codec(u)) {
      codec->quantize_region(
          0, shard.data(),
          [&](int slot, int64_t elem, int64_t count, float* dst) {
            const int64_t at = model.layout().units()[u].tensors[slot].offset + elem;
            std::copy(w[u].begin() + at, w[u].begin() + at + count, dst);
          },
          [](double*, size_t) {});
    } else {
      std::copy(w[u].begin(), w[u].end(), shard.begin());
    }
    be.to_device(fsdp.master(u), shard.data(), shard.size() * sizeof(float));
  }
  OptimizerConfig oc;
  oc.lr = 1e-2;
  oc.weight_decay = 0.1;
  oc.total_steps = 3;
  oc.eps = 1e-3;  // damps Adam's amplification of fp32 noise in tiny gradients (their sign)
  HostBatch hb = hb_in;
  DeviceBatch dev(be);
  for (int step = 0; step < 3; ++step) {
    if (opts.lora_dropout > 0) hb.dropout_keys = {uint64_t(100 + step), uint64_t(200 + step)};
    fsdp.zero_grad_shards();
    model.forward_backward(dev.upload(hb), fsdp, 1.f / float(hb.target_tokens));
    fsdp.end_backward();
    EXPECT_TRUE(adamw_step(fsdp, be, oc, step).finite);
  }
  std::vector<std::vector<float>> trained;
  for (int u = 0; u < fsdp.num_units(); ++u) {
    if (!fsdp.trainable(u)) continue;
    std::vector<float> m(fsdp.geometry(u).shard_size);
    be.to_host(m.data(), fsdp.master(u), m.size() * sizeof(float));
    trained.push_back(std::move(m));
  }
  return trained;
}

TEST(CudaModel, FsdpTrainingStepsMatchCpuFullAndQlora) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  const LlamaConfig cfg = small_config();
  const HostBatch hb = batch(int(cfg.vocab_size), 19);
  ModelOptions full;
  ModelOptions qlora;
  qlora.lora.rank = 4;
  qlora.lora.alpha = 8;
  for (bool& t : qlora.lora.targets) t = true;
  qlora.lora_dropout = 0.2f;
  for (const auto& [name, opts, kind] :
       {std::make_tuple("full", full, quant::Kind::kNone), std::make_tuple("qlora", qlora, quant::Kind::kNf4)}) {
    SCOPED_TRACE(name);
    auto cpu = make_cpu_backend();
    auto gpu = make_cuda_backend(0, kTestPoolBytes);
    const auto want = train_steps(*cpu, cfg, opts, kind, hb);
    const auto got = train_steps(*gpu, cfg, opts, kind, hb);
    ASSERT_EQ(got.size(), want.size());
    for (size_t u = 0; u < want.size(); ++u) expect_close("trained unit " + std::to_string(u), got[u], want[u], Tol{2e-5, 1e-4});
  }
}

}  // namespace
}  // namespace llamaft::cuda_test
