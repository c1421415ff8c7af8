// The attention kernel against the GEMM-bound time for its FLOPs, in the
// same run: causal GQA forward and backward in bf16 at the llama3.2-1b shape
// (32 query heads, 8 kv heads, head_dim 64, seq 2048 by default), timed
// through the CUDA backend, and the backend's own bf16 GEMM (8192^3, bf16
// output) for the peak. FLOPs: forward 4 * B * H * T^2 * hd / 2 (causal),
// backward 2.5x forward (FlashAttention-2's accounting).
// Usage: bench_cuda_attention [seq=2048] [heads=32] [kv_heads=8] [head_dim=64]   prints one JSON line
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "backend/cuda/cuda_backend.hpp"
#include "core/dtype.hpp"

using namespace llamaft;

namespace {

// Best wall time of `reps` runs of op (synchronized), after two warm-ups.
double best_seconds(Backend& be, int reps, const std::function<void()>& op) {
  double best = 1e30;
  for (int r = -2; r < reps; ++r) {
    be.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    op();
    be.synchronize();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r >= 0) best = std::min(best, s);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int t = argc > 1 ? std::atoi(argv[1]) : 2048;
  const int hq = argc > 2 ? std::atoi(argv[2]) : 32;
  const int hkv = argc > 3 ? std::atoi(argv[3]) : 8;
  const int hd = argc > 4 ? std::atoi(argv[4]) : 64;
  if (!cuda_device_available()) {
    std::fprintf(stderr, "bench_cuda_attention: no CUDA device\n");
    return 77;
  }
  CudaBackend be(0, size_t(8) << 30);
  const int qd = hq * hd, kvd = hkv * hd, ld = qd + 2 * kvd;
  auto* qkv = static_cast<bf16*>(be.alloc_bytes(sizeof(bf16) * size_t(t) * ld));
  auto* dqkv = static_cast<bf16*>(be.alloc_bytes(sizeof(bf16) * size_t(t) * ld));
  auto* out = static_cast<bf16*>(be.alloc_bytes(sizeof(bf16) * size_t(t) * qd));
  auto* dout = static_cast<bf16*>(be.alloc_bytes(sizeof(bf16) * size_t(t) * qd));
  auto* lse = static_cast<float*>(be.alloc_bytes(sizeof(float) * size_t(hq) * t));
  be.fill(qkv, 0.01f, size_t(t) * ld);
  be.fill(dout, 0.01f, size_t(t) * qd);
  AttnShape s;
  s.tq = s.tk = t;
  s.n_heads = hq;
  s.n_kv_heads = hkv;
  s.head_dim = hd;
  s.scale = 1.f / std::sqrt(float(hd));
  s.ldq = s.ldk = s.ldv = ld;
  s.ldo = qd;
  const double fwd_s = best_seconds(be, 10, [&] { be.attention_fwd(s, qkv, qkv + qd, qkv + qd + kvd, out, lse); });
  const double bwd_s = best_seconds(be, 10, [&] {
    be.attention_bwd(s, qkv, qkv + qd, qkv + qd + kvd, out, lse, dout, dqkv, dqkv + qd, dqkv + qd + kvd);
  });

  const int n = 8192;
  auto* a = static_cast<bf16*>(be.alloc_bytes(sizeof(bf16) * size_t(n) * n));
  auto* b = static_cast<bf16*>(be.alloc_bytes(sizeof(bf16) * size_t(n) * n));
  auto* c = static_cast<bf16*>(be.alloc_bytes(sizeof(bf16) * size_t(n) * n));
  be.fill(a, 0.01f, size_t(n) * n);
  be.fill(b, 0.01f, size_t(n) * n);
  const double gemm_s = best_seconds(be, 10, [&] { be.gemm(false, true, n, n, n, 1.f, a, n, b, n, 0.f, c, n); });
  const double peak = 2.0 * n * double(n) * n / gemm_s;

  const double fwd_flops = 4.0 * hq * double(t) * t * hd / 2, bwd_flops = 2.5 * fwd_flops;
  std::printf("{\"seq\": %d, \"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d, \"bf16_gemm_tflops\": %.1f, "
              "\"attn_fwd_ms\": %.3f, \"attn_bwd_ms\": %.3f, \"attn_fwd_tflops\": %.1f, \"attn_bwd_tflops\": %.1f, "
              "\"fwd_vs_gemm_bound\": %.2f, \"bwd_vs_gemm_bound\": %.2f}\n",
              t, hq, hkv, hd, peak / 1e12, fwd_s * 1e3, bwd_s * 1e3, fwd_flops / fwd_s / 1e12, bwd_flops / bwd_s / 1e12,
              fwd_s / (fwd_flops / peak), bwd_s / (bwd_flops / peak));
  return 0;
}
