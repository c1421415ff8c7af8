#include "train/mfu.hpp"

#include <chrono>
#include <vector>

namespace llamaft {

double train_flops_per_token(const LlamaConfig& c, bool lora, int64_t adapter_params, int seq_len) {
  const double d = static_cast<double>(c.hidden_size);
  const double block = d * c.q_dim() * 2 + 2 * d * c.kv_dim() + 3 * d * c.intermediate_size;  // q,k,v,o + MLP
  const double matmul_params = c.num_hidden_layers * block + static_cast<double>(c.vocab_size) * d;  // + LM head
  const double attention = 12.0 * c.num_hidden_layers * static_cast<double>(seq_len) * c.q_dim();
  if (!lora) return 6 * matmul_params + attention;
  return 4 * matmul_params + 6 * static_cast<double>(adapter_params) + attention;
}

namespace {

template <typename T>
GemmPeak time_gemms(Backend& be, int n, double budget_s) {
  using Clock = std::chrono::steady_clock;
  const size_t elems = static_cast<size_t>(n) * n;
  const size_t mark = be.peak_bytes();
  T* a = static_cast<T*>(be.alloc_bytes(elems * sizeof(T)));  // (n, n) each
  T* b = static_cast<T*>(be.alloc_bytes(elems * sizeof(T)));
  T* c = static_cast<T*>(be.alloc_bytes(elems * sizeof(T)));
  be.fill(a, 0.5f, elems);
  be.fill(b, 0.25f, elems);
  be.fill(c, 0.0f, elems);
  GemmPeak p;
  p.size = n;
  const auto start = Clock::now();
  be.gemm(false, true, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);  // warm-up: threads, kernels, caches
  be.synchronize();
  const double flops = 2.0 * n * n * static_cast<double>(n);
  do {
    const auto t0 = Clock::now();
    be.gemm(false, true, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    be.synchronize();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s > 0 && flops / s > p.flops_per_s) p.flops_per_s = flops / s;
  } while (std::chrono::duration<double>(Clock::now() - start).count() < budget_s);
  p.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  be.free_bytes(c);
  be.free_bytes(b);
  be.free_bytes(a);
  be.restore_peak_bytes(mark);
  return p;
}

}  // namespace

GemmPeak measure_gemm_peak(Backend& be, bool bf16, double budget_s, int size) {
  // Big enough to reach a GEMM's plateau, small enough that one call fits the
  // budget many times: 512 on a CPU (0.27 GFLOP), 4096 on a GPU (137 GFLOP).
  const int n = size > 0 ? size : be.host_resident() ? 512 : 4096;
  return bf16 ? time_gemms<llamaft::bf16>(be, n, budget_s) : time_gemms<float>(be, n, budget_s);
}

}  // namespace llamaft
