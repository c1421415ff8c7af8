// The whole model on the CUDA backend against the CPU backend, from the same
// weights and batch: logits, loss and every gradient of a small Llama in fp32
// and with bf16 storage (activations and weights in bf16, against the CPU's
// fp32 run on the same bf16-rounded weights, with bf16-sized tolerances), and
// three FSDP AdamW steps on one GPU for full fine-tuning and for QLoRA with
// LoRA dropout, in fp32 and in bf16 (train.param_dtype = bf16).
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cuda/cuda_backend.hpp"
#include "comm/communicator.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "cuda_test_util.hpp"
#include "self_comm.hpp"
#include "data/token_dataset.hpp"
#include "model/device_batch.hpp"
#include "model/llama.hpp"
#include "optim/optimizer.hpp"
#include "parallel/fsdp.hpp"

namespace llamaft::cuda_test {
namespace {

LlamaConfig small_config() {
  LlamaConfig c = preset_config("tiny");
  c.vocab_size = 211;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 64;  // the bf16 tensor-core attention kernels serve 64 and 128
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

// Resident fp32 params plus a bf16 copy of each unit for a bf16-storage model.
class ResidentWithBf16 final : public UnitAccess {
 public:
  ResidentWithBf16(Backend& be, const ParamLayout& layout, const std::vector<std::vector<float>>& w)
      : be_(be), fp32_(be, layout) {
    for (int u = 0; u < fp32_.num_units(); ++u) {
      be.to_device(fp32_.mutable_params(u), w[u].data(), w[u].size() * sizeof(float));
      if (be.has_bf16_storage()) {
        half_.emplace_back(be, (w[u].size() + 1) / 2);
        be.pack_bf16(fp32_.params(u), half_.back().data(), w[u].size());
      }
    }
  }
  const float* params(int unit) override { return fp32_.params(unit); }
  const bf16* params_bf16(int unit) override { return reinterpret_cast<const bf16*>(half_.at(unit).data()); }
  float* grads(int unit) override { return fp32_.grads(unit); }
  const float* grad_data(int unit) const { return fp32_.grad_data(unit); }
  int num_units() const { return fp32_.num_units(); }
  int64_t unit_numel(int unit) const { return fp32_.unit_numel(unit); }

 private:
  Backend& be_;
  ResidentParams fp32_;
  std::vector<DeviceArray<float>> half_;
};

std::vector<std::vector<float>> bf16_rounded(std::vector<std::vector<float>> units) {
  for (auto& u : units)
    for (float& x : u) x = bf16_to_f32(f32_to_bf16(x));
  return units;
}

Outputs run_model(Backend& be, const LlamaConfig& cfg, const std::vector<std::vector<float>>& w, const HostBatch& hb,
                  bool bf16_storage = false) {
  ModelOptions opts;
  opts.bf16_storage = bf16_storage;
  LlamaModel model(cfg, be, opts);
  ResidentWithBf16 params(be, model.layout(), w);
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
}

// bf16 storage against the CPU's fp32 run on the same bf16-rounded weights:
// what remains is bf16 rounding of the activations (8-bit mantissas) through
// two blocks, the head and back.
// The CPU backend computes bf16 storage with the same rounding points (its
// bf16 twin), so it is the reference. The two differ only where fp32
// accumulation order moves a value across a bf16 rounding boundary (a flip
// of one ulp), so their logits must differ by less than one bf16 rounding of
// the logits would make: RMS 2^-8 / sqrt(3) of the logits' RMS (a uniform
// error in half an ulp, 2^-8 relative). A rounding point missing, added, or
// left in fp32 adds at least that much; bf16 against fp32 is well above it.
TEST(CudaModel, Bf16StorageMatchesItsCpuTwin) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  const LlamaConfig cfg = small_config();
  const auto w = bf16_rounded(random_units(ParamLayout(cfg), 5));
  const HostBatch hb = batch(int(cfg.vocab_size), 23);
  auto cpu = make_cpu_backend();
  auto gpu = make_cuda_backend(0, kTestPoolBytes);
  const Outputs want = run_model(*cpu, cfg, w, hb, true);
  const Outputs got = run_model(*gpu, cfg, w, hb, true);
  const Outputs cpu_fp32 = run_model(*cpu, cfg, w, hb);
  double logit_scale = 0, ss = 0, ss_twin = 0, ss_fp32 = 0;
  for (size_t i = 0; i < want.logits.size(); ++i) {
    logit_scale = std::max(logit_scale, double(std::abs(want.logits[i])));
    ss += double(want.logits[i]) * want.logits[i];
    ss_twin += std::pow(double(got.logits[i]) - want.logits[i], 2);
    ss_fp32 += std::pow(double(got.logits[i]) - cpu_fp32.logits[i], 2);
  }
  const double n = double(want.logits.size());
  const double one_rounding = std::sqrt(ss / n) / 256.0 / std::sqrt(3.0);
  std::printf("logits RMS difference: %.3g from the CPU bf16 twin, %.3g from CPU fp32; one bf16 rounding: %.3g\n",
              std::sqrt(ss_twin / n), std::sqrt(ss_fp32 / n), one_rounding);
  EXPECT_LT(std::sqrt(ss_twin / n), one_rounding) << "the GPU's bf16 rounding points are not the CPU's";
  // Elementwise: within the old bound against fp32 (every rounding point's worth).
  compare(got, want, Tol{2e-2 * logit_scale, 2e-2}, Tol{2e-2, 2e-2}, 1e-3);
  // And it is not the fp32 path: bf16 activations do change the logits.
  const Outputs fp32 = run_model(*gpu, cfg, w, hb);
  EXPECT_NE(fp32.logits, got.logits);
}

// Three AdamW steps through Fsdp (full_shard on one rank) on each backend.
struct Trained {
  std::vector<std::vector<float>> initial, weights;  // trainable units before and after
  std::vector<double> losses;
};

// bf16: train.param_dtype = bf16 (bf16 gathers; bf16 storage where the backend has it).
Trained train_steps(Backend& be, const LlamaConfig& cfg, ModelOptions opts, quant::Kind base_quant,
                    const HostBatch& hb_in, bool bf16 = false) {
  opts.bf16_storage = bf16 && be.has_bf16_storage();
  LlamaModel model(cfg, be, opts);
  SelfComm comm;
  FsdpOptions options;
  options.base_quant = base_quant;
  options.bf16_params = bf16;
  Fsdp fsdp(model.layout(), be, comm, options);
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
  Trained t;
  auto trainable = [&] {
    std::vector<std::vector<float>> out;
    for (int u = 0; u < fsdp.num_units(); ++u) {
      if (!fsdp.trainable(u)) continue;
      std::vector<float> m(fsdp.geometry(u).shard_size);
      be.to_host(m.data(), fsdp.master(u), m.size() * sizeof(float));
      out.push_back(std::move(m));
    }
    return out;
  };
  t.initial = trainable();
  for (int step = 0; step < 3; ++step) {
    if (opts.lora_dropout > 0) hb.dropout_keys = {uint64_t(100 + step), uint64_t(200 + step)};
    fsdp.zero_grad_shards();
    t.losses.push_back(model.forward_backward(dev.upload(hb), fsdp, 1.f / float(hb.target_tokens)).loss_sum /
                       double(hb.target_tokens));
    fsdp.end_backward();
    EXPECT_TRUE(adamw_step(fsdp, be, oc, step).finite);
  }
  t.weights = trainable();
  return t;
}

// Cosine similarity of the two runs' weight updates over one unit.
double update_cosine(const std::vector<float>& w0, const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < w0.size(); ++i) {
    const double da = double(a[i]) - w0[i], db = double(b[i]) - w0[i];
    ab += da * db;
    aa += da * da;
    bb += db * db;
  }
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
}

// Full fine-tuning, and QLoRA (NF4 base) with LoRA dropout.
std::vector<std::tuple<std::string, ModelOptions, quant::Kind>> training_modes() {
  ModelOptions qlora;
  qlora.lora.rank = 4;
  qlora.lora.alpha = 8;
  for (bool& t : qlora.lora.targets) t = true;
  qlora.lora_dropout = 0.2f;
  return {{"full", ModelOptions{}, quant::Kind::kNone}, {"qlora", qlora, quant::Kind::kNf4}};
}

TEST(CudaModel, FsdpTrainingStepsMatchCpuFullAndQlora) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  const LlamaConfig cfg = small_config();
  const HostBatch hb = batch(int(cfg.vocab_size), 19);
  for (const auto& [name, opts, kind] : training_modes()) {
    SCOPED_TRACE(name);
    auto cpu = make_cpu_backend();
    auto gpu = make_cuda_backend(0, kTestPoolBytes);
    const Trained want = train_steps(*cpu, cfg, opts, kind, hb);
    const Trained got = train_steps(*gpu, cfg, opts, kind, hb);
    ASSERT_EQ(got.weights.size(), want.weights.size());
    for (size_t u = 0; u < want.weights.size(); ++u)
      expect_close("trained unit " + std::to_string(u), got.weights[u], want.weights[u], Tol{2e-5, 1e-4});
  }
}

// train.param_dtype = bf16 on both backends: bf16 gathers everywhere, bf16
// activations on the GPU, fp32 compute on the CPU. Adam normalises the
// update, so bf16 noise can flip the sign of tiny gradients: the check is
// the loss of every step and the direction of every unit's update.
TEST(CudaModel, FsdpBf16TrainingStepsTrackCpu) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  const LlamaConfig cfg = small_config();
  const HostBatch hb = batch(int(cfg.vocab_size), 19);
  for (const auto& [name, opts, kind] : training_modes()) {
    SCOPED_TRACE(name);
    auto cpu = make_cpu_backend();
    auto gpu = make_cuda_backend(0, kTestPoolBytes);
    const Trained want = train_steps(*cpu, cfg, opts, kind, hb, true);
    const Trained got = train_steps(*gpu, cfg, opts, kind, hb, true);
    ASSERT_EQ(got.weights.size(), want.weights.size());
    for (size_t i = 0; i < want.losses.size(); ++i) EXPECT_NEAR(got.losses[i], want.losses[i], 5e-3 * want.losses[i]);
    EXPECT_LT(want.losses.back(), want.losses.front()) << "the reference does not learn";
    EXPECT_EQ(got.initial, want.initial);
    for (size_t u = 0; u < want.weights.size(); ++u)
      EXPECT_GT(update_cosine(want.initial[u], got.weights[u], want.weights[u]), 0.99) << "unit " << u;
  }
}

}  // namespace
}  // namespace llamaft::cuda_test
