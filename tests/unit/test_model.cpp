// Whole-model invariants on the CPU backend: KV-cache decoding reproduces the
// full forward pass, activation checkpointing changes nothing, and gradients
// match central finite differences of the loss in a few random directions.
#include <gtest/gtest.h>

#include <cmath>

#include "core/rng.hpp"
#include "data/token_dataset.hpp"
#include "model/device_batch.hpp"
#include "model/llama.hpp"

namespace llamaft {
namespace {

LlamaConfig micro_config(bool tied) {
  LlamaConfig c = preset_config(tied ? "tiny-tied" : "tiny");
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  return c;
}

void random_init(ResidentParams& p, const ParamLayout& layout, uint64_t seed) {
  for (int u = 0; u < layout.num_units(); ++u) {
    Rng rng(seed, u);
    for (const auto& t : layout.units()[u].tensors) {
      float* w = p.mutable_params(u) + t.offset;
      const bool norm = t.shape.size() == 1;
      for (int64_t i = 0; i < t.numel(); ++i) w[i] = norm ? float(1 + 0.1 * rng.normal()) : float(0.2 * rng.normal());
    }
  }
}

HostBatch sample_batch(int vocab) {
  TokenRow a, b;
  Rng rng(99);
  for (int i = 0; i < 13; ++i) a.input_ids.push_back(int32_t(rng.next_u64() % vocab));
  for (int i = 0; i < 9; ++i) b.input_ids.push_back(int32_t(rng.next_u64() % vocab));
  a.labels = a.input_ids;
  b.labels = b.input_ids;
  b.labels[3] = -100;
  static TokenRow sa, sb;
  sa = a;
  sb = b;
  return make_batch({&sa, &sb}, 13);
}

TEST(Model, KvCacheDecodeMatchesFullForward) {
  auto be = make_cpu_backend();
  const LlamaConfig cfg = micro_config(false);
  LlamaModel model(cfg, *be);
  ResidentParams params(*be, model.layout());
  random_init(params, model.layout(), 1);
  std::vector<int32_t> ids = {5, 17, 3, 88, 42, 42, 7, 1, 60, 33};
  TokenRow row{ids, ids, {}};
  const HostBatch hb = make_batch({&row}, static_cast<int>(ids.size()));
  DeviceBatch dev(*be);
  std::vector<float> full(ids.size() * cfg.vocab_size);
  model.forward_logits(dev.upload(hb), params, full.data());

  model.reset_cache(static_cast<int>(ids.size()));
  auto logits = model.decode(ids.data(), 4, params);  // prefill 4
  for (size_t t = 3; t < ids.size(); ++t) {
    double worst = 0;
    for (int v = 0; v < cfg.vocab_size; ++v)
      worst = std::max(worst, double(std::abs(logits[v] - full[t * cfg.vocab_size + v])));
    EXPECT_LT(worst, 1e-4) << "position " << t;
    if (t + 1 < ids.size()) logits = model.decode(&ids[t + 1], 1, params);
  }
}

TEST(Model, ActivationCheckpointingGivesIdenticalGradients) {
  auto be = make_cpu_backend();
  const LlamaConfig cfg = micro_config(false);
  std::vector<std::vector<float>> grads[2];
  double losses[2];
  for (int recompute = 0; recompute < 2; ++recompute) {
    ModelOptions opts;
    opts.activation_checkpointing = recompute == 1;
    LlamaModel model(cfg, *be, opts);
    ResidentParams params(*be, model.layout());
    random_init(params, model.layout(), 2);
    const HostBatch hb = sample_batch(int(cfg.vocab_size));
    DeviceBatch dev(*be);
    losses[recompute] = model.forward_backward(dev.upload(hb), params, 1.f / hb.target_tokens).loss_sum;
    for (int u = 0; u < params.num_units(); ++u)
      grads[recompute].emplace_back(params.grad_data(u), params.grad_data(u) + params.unit_numel(u));
  }
  EXPECT_EQ(losses[0], losses[1]);
  for (size_t u = 0; u < grads[0].size(); ++u) EXPECT_EQ(grads[0][u], grads[1][u]) << "unit " << u;
}

// d loss / d theta along random directions vs (L(theta + h d) - L(theta - h d)) / 2h.
void check_directional_derivatives(bool tied) {
  auto be = make_cpu_backend();
  const LlamaConfig cfg = micro_config(tied);
  LlamaModel model(cfg, *be);
  ResidentParams params(*be, model.layout());
  random_init(params, model.layout(), 3);
  const HostBatch hb = sample_batch(int(cfg.vocab_size));
  DeviceBatch dev(*be);
  const Batch b = dev.upload(hb);
  const float scale = 1.f / hb.target_tokens;
  model.forward_backward(b, params, scale);

  for (int u = 0; u < params.num_units(); ++u) {
    const int64_t n = params.unit_numel(u);
    Rng rng(5, u);
    std::vector<float> dir(n);
    double norm = 0, analytic = 0;
    for (int64_t i = 0; i < n; ++i) norm += double(dir[i] = float(rng.normal())) * dir[i];
    for (int64_t i = 0; i < n; ++i) {
      dir[i] = float(dir[i] / std::sqrt(norm));  // unit direction: a small, linear-regime step
      analytic += double(dir[i]) * params.grad_data(u)[i];
    }
    const float h = 1e-2f;
    auto loss_at = [&](float sign) {
      float* w = params.mutable_params(u);
      for (int64_t i = 0; i < n; ++i) w[i] += sign * h * dir[i];
      const LossSum s = model.forward_loss(b, params);
      for (int64_t i = 0; i < n; ++i) w[i] -= sign * h * dir[i];
      return s.loss_sum / s.tokens;
    };
    const double numeric = (loss_at(1) - loss_at(-1)) / (2 * h);
    EXPECT_NEAR(analytic, numeric, 1e-2 * std::abs(numeric) + 2e-4) << "unit " << model.layout().units()[u].name;
    EXPECT_GT(std::abs(analytic), 1e-6) << "unit " << u << " has a zero gradient";
  }
}

TEST(Model, GradientsMatchFiniteDifferencesUntied) { check_directional_derivatives(false); }
TEST(Model, GradientsMatchFiniteDifferencesTied) { check_directional_derivatives(true); }

}  // namespace
}  // namespace llamaft

namespace llamaft {
namespace {

// LoRA dropout (PEFT's lora_dropout): the masks are a function of their keys,
// so the loss with dropout is a deterministic function of the weights whose
// gradient must match finite differences; no keys (eval) means no dropout.
TEST(Model, LoraDropoutGradientsMatchFiniteDifferences) {
  auto be = make_cpu_backend();
  const LlamaConfig cfg = micro_config(false);
  ModelOptions opts;
  opts.lora.rank = 4;
  opts.lora.alpha = 8;
  for (bool& t : opts.lora.targets) t = true;
  opts.lora_dropout = 0.3f;
  LlamaModel model(cfg, *be, opts);
  ResidentParams params(*be, model.layout());
  random_init(params, model.layout(), 4);  // B != 0, so every adapter gets a gradient
  HostBatch hb = sample_batch(int(cfg.vocab_size));
  DeviceBatch dev(*be);
  const float scale = 1.f / hb.target_tokens;
  const double plain = model.forward_loss(dev.upload(hb), params).loss_sum;
  hb.dropout_keys = {0x1234, 0x9876};
  const Batch b = dev.upload(hb);
  auto train_loss = [&] {
    params.zero_grads();
    return model.forward_backward(b, params, scale).loss_sum * scale;
  };
  const double dropped = train_loss();
  EXPECT_GT(std::abs(dropped - plain * scale), 1e-4) << "dropout changed nothing";
  EXPECT_EQ(dropped, train_loss()) << "the masks must be a function of their keys";
  EXPECT_EQ(model.forward_loss(b, params).loss_sum, plain) << "evaluation must not drop";
  train_loss();
  for (int u = 0; u < params.num_units(); ++u) {
    if (!model.layout().units()[u].trainable) continue;
    const int64_t n = params.unit_numel(u);
    const std::vector<float> grad(params.grad_data(u), params.grad_data(u) + n);
    Rng rng(6, u);
    std::vector<float> dir(n);
    double norm = 0, analytic = 0;
    for (int64_t i = 0; i < n; ++i) norm += double(dir[i] = float(rng.normal())) * dir[i];
    for (int64_t i = 0; i < n; ++i) analytic += double(dir[i] = float(dir[i] / std::sqrt(norm))) * grad[i];
    const float h = 1e-2f;
    auto loss_at = [&](float sign) {
      float* w = params.mutable_params(u);
      for (int64_t i = 0; i < n; ++i) w[i] += sign * h * dir[i];
      const double l = train_loss();
      for (int64_t i = 0; i < n; ++i) w[i] -= sign * h * dir[i];
      return l;
    };
    const double numeric = (loss_at(1) - loss_at(-1)) / (2 * h);
    EXPECT_NEAR(analytic, numeric, 1e-2 * std::abs(numeric) + 2e-4) << "unit " << model.layout().units()[u].name;
    EXPECT_GT(std::abs(analytic), 1e-6) << "unit " << u << " has a zero gradient";
  }
}

TEST(Model, DropoutMaskRateAndScale) {
  auto be = make_cpu_backend();
  const int rows = 64, cols = 1000, seq = 16;
  const float p = 0.25f;
  std::vector<float> x(size_t(rows) * cols, 1.f), y(x.size());
  const std::vector<uint64_t> keys = {1, 2, 3, 4};
  be->dropout(x.data(), y.data(), rows, cols, seq, keys.data(), 7, p);
  int64_t zeros = 0;
  for (float v : y) {
    if (v == 0.f) ++zeros;
    else EXPECT_FLOAT_EQ(v, 1.f / (1.f - p));
  }
  const double n = double(y.size()), expect = p * n, sigma = std::sqrt(n * p * (1 - p));
  EXPECT_NEAR(double(zeros), expect, 4 * sigma);
  // Another salt gives another mask; the same keys and salt the same one.
  std::vector<float> y2(x.size()), y3(x.size());
  be->dropout(x.data(), y2.data(), rows, cols, seq, keys.data(), 8, p);
  be->dropout(x.data(), y3.data(), rows, cols, seq, keys.data(), 7, p);
  EXPECT_NE(y, y2);
  EXPECT_EQ(y, y3);
}

}  // namespace
}  // namespace llamaft
