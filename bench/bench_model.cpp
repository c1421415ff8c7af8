// Forward+backward throughput of the CPU backend on a stories15M-sized Llama
// (dim 288, 6 layers, 6 heads, vocab 32000), printed as one JSON line with
// tokens/s, achieved GFLOP/s and the machine's measured SGEMM peak (a large
// GEMM in the same run). bench/run_cpu_bench.sh compares it with PyTorch.
// Usage: bench_model [batch=4] [seq=256] [steps=5] [fp32|bf16] [preset=small]
// bf16 computes as train.param_dtype = bf16 does (bf16 weights and activations).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/cpu/gemm.hpp"
#include "core/rng.hpp"
#include "model/device_batch.hpp"
#include "model/llama.hpp"

using namespace llamaft;

double sgemm_peak_gflops() {
  const int n = 2048;
  std::vector<float> a(size_t(n) * n, 0.5f), b(a.size(), 0.25f), c(a.size());
  const auto impl = cpu::default_gemm_impl();
  cpu::sgemm(impl, false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    cpu::sgemm(impl, false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * n / s / 1e9);
  }
  return best;
}

int main(int argc, char** argv) {
  const int batch = argc > 1 ? std::atoi(argv[1]) : 4;
  const int seq = argc > 2 ? std::atoi(argv[2]) : 256;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 5;
  const bool bf16 = argc > 4 && std::string(argv[4]) == "bf16";
  LlamaConfig cfg = preset_config(argc > 5 ? argv[5] : "small");
  auto be = make_cpu_backend();
  ModelOptions opts;
  opts.bf16_storage = bf16;
  LlamaModel model(cfg, *be, opts);
  ResidentParams params(*be, model.layout());
  for (int u = 0; u < params.num_units(); ++u) {
    Rng rng(1, u);
    float* w = params.mutable_params(u);
    for (int64_t i = 0; i < params.unit_numel(u); ++i) w[i] = float(0.02 * rng.normal());
  }
  if (bf16) params.round_copies_to_bf16();
  std::vector<TokenRow> rows(batch);
  Rng rng(2);
  for (auto& r : rows) {
    for (int t = 0; t < seq; ++t) r.input_ids.push_back(int32_t(rng.next_u64() % cfg.vocab_size));
    r.labels = r.input_ids;
  }
  std::vector<const TokenRow*> ptrs;
  for (auto& r : rows) ptrs.push_back(&r);
  const HostBatch hb = make_batch(ptrs, seq);
  DeviceBatch dev(*be);
  const Batch b = dev.upload(hb);

  model.forward_backward(b, params, 1.f / hb.target_tokens);  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s < steps; ++s) model.forward_backward(b, params, 1.f / hb.target_tokens);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;

  const double d = cfg.hidden_size, f = cfg.intermediate_size, L = cfg.num_hidden_layers;
  const double matmul_params = L * (d * (cfg.q_dim() + 2 * cfg.kv_dim()) + cfg.q_dim() * d + 3 * d * f) +
                               double(cfg.vocab_size) * d;
  // 6 N per token for the GEMMs, plus causal attention: fwd 2 T d (QK^T and
  // PV, half the square), times 3 for fwd+bwd, per layer, per token.
  const double flops_per_token = 6 * matmul_params + 6 * L * seq * cfg.q_dim();
  const double tokens = double(batch) * seq;
  const double peak = sgemm_peak_gflops();
  const double achieved = flops_per_token * tokens / secs / 1e9;
  std::printf(
      "{\"impl\": \"llamaft-%s%s\", \"threads\": %d, \"batch\": %d, \"seq\": %d, \"step_s\": %.4f, "
      "\"tokens_per_s\": %.1f, \"gflops\": %.1f, \"sgemm_peak_gflops\": %.1f, \"fraction_of_peak\": %.3f}\n",
      cpu::gemm_impl_name(cpu::default_gemm_impl()), bf16 ? "-bf16" : "", omp_get_max_threads(), batch, seq, secs, tokens / secs,
      achieved, peak, achieved / peak);
  return 0;
}
