// SGEMM on this machine: the measured peak (large square GEMM) and the
// model's own shapes, OpenBLAS vs Eigen in the same run. This is how the
// CPU backend's default GEMM was chosen.
//
// Then the bf16 GEMMs (train.param_dtype = bf16, backend/cpu/gemm_bf16.hpp)
// on the shapes of the 110M model and llama3.2-1b, on the path this CPU runs:
// against the bf16 peak measured here (a register-resident VDPBF16PS loop,
// 64 FLOP per instruction) where the CPU has AVX512-BF16, and against the
// SGEMM on the same shape (what the widened path costs over fp32) elsewhere.
// Usage: bench_gemm [rows=1024]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "backend/cpu/gemm.hpp"
#include "backend/cpu/gemm_bf16.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

using namespace llamaft::cpu;
using llamaft::bf16;

#if defined(__x86_64__)
// GCC 12's avx512fintrin.h set1/setzero trip -Wuninitialized in its own code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// 12 independent accumulators hide VDPBF16PS's latency; each instruction is
// 16 lanes x 2 products x 2 FLOP.
__attribute__((target("avx512f,avx512bf16"))) double bf16_peak_gflops() {
  const long iters = 100000000;
  const auto t0 = std::chrono::steady_clock::now();
  double sink = 0;
#pragma omp parallel reduction(+ : sink)
  {
    __m512 acc[12];
    for (auto& x : acc) x = _mm512_setzero_ps();
    const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3c00);
    const long mine = iters / omp_get_num_threads();
    for (long it = 0; it < mine; ++it)
      for (auto& x : acc) x = _mm512_dpbf16_ps(x, a, b);
    for (auto& x : acc) sink += _mm512_reduce_add_ps(x);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (sink == 1.2345) std::printf(" ");
  return 12.0 * 64 * iters / s / 1e9;
}
#else
double bf16_peak_gflops() { return 0; }
#endif

double bf16_gflops(bool ta, bool tb, int m, int n, int k, int reps) {
  std::vector<bf16> a(size_t(m) * k, bf16(0.5f)), b(size_t(k) * n, bf16(0.25f));
  std::vector<float> c(size_t(m) * n, 0.f);
  const int lda = ta ? m : k, ldb = tb ? k : n;
  const Bf16GemmPath path = bf16_gemm_path();
  const GemmImpl impl = default_gemm_impl();
  gemm_bf16(path, impl, ta, tb, m, n, k, 1.f, a.data(), lda, b.data(), ldb, 0.f, c.data(), n);
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r)
    gemm_bf16(path, impl, ta, tb, m, n, k, 1.f, a.data(), lda, b.data(), ldb, 0.f, c.data(), n);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * m * n * k * reps / s / 1e9;
}

double gflops(GemmImpl impl, bool ta, bool tb, int m, int n, int k, int reps) {
  std::vector<float> a(size_t(m) * k, 0.5f), b(size_t(k) * n, 0.25f), c(size_t(m) * n, 0.f);
  const int lda = ta ? m : k, ldb = tb ? k : n;
  sgemm(impl, ta, tb, m, n, k, 1.f, a.data(), lda, b.data(), ldb, 0.f, c.data(), n);  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) sgemm(impl, ta, tb, m, n, k, 1.f, a.data(), lda, b.data(), ldb, 0.f, c.data(), n);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * m * n * k * reps / s / 1e9;
}

int main(int argc, char** argv) {
  const int rows = argc > 1 ? std::atoi(argv[1]) : 1024;
  std::printf("threads: %d\n", omp_get_max_threads());
  struct Shape {
    const char* what;
    bool ta, tb;
    int m, n, k;
  } shapes[] = {
      {"peak 2048^3", false, false, 2048, 2048, 2048},
      {"qkv fwd  x@W^T", false, true, rows, 864, 288},
      {"gate_up  x@W^T", false, true, rows, 1536, 288},
      {"down     x@W^T", false, true, rows, 288, 768},
      {"lm_head  x@W^T", false, true, rows, 32000, 288},
      {"dW       dy^T@x", true, false, 1536, 288, rows},
      {"dx       dy@W", false, false, rows, 288, 1536},
  };
  std::printf("%-18s %12s %12s %8s\n", "shape", "openblas", "eigen", "ratio");
  for (const auto& s : shapes) {
    const double work = 2.0 * s.m * s.n * s.k;
    const int reps = std::max(1, int(4e10 / work));
    const double ob = gflops(GemmImpl::kOpenBlas, s.ta, s.tb, s.m, s.n, s.k, reps);
    const double ei = gflops(GemmImpl::kEigen, s.ta, s.tb, s.m, s.n, s.k, reps);
    std::printf("%-18s %9.1f GF %9.1f GF %7.2fx\n", s.what, ob, ei, ob / ei);
  }

  const bool hw = cpu_has_avx512_bf16();
  const double peak = hw ? bf16_peak_gflops() : 0;
  std::printf("\nbf16 GEMMs, path: %s", bf16_gemm_path_name(bf16_gemm_path()));
  if (hw) std::printf("; measured bf16 peak (VDPBF16PS loop) %.1f GFLOP/s", peak);
  else std::printf("; no AVX512-BF16 on this CPU: no bf16 peak to measure, compared with SGEMM instead");
  std::printf("\n%-24s %10s %10s %10s\n", "shape (rows x out x in)", "bf16", "sgemm", hw ? "of peak" : "vs sgemm");
  struct Bf16Shape {
    const char* what;
    bool ta, tb;
    int m, n, k;
  } b16[] = {
      {"110M qkv   x@W^T", false, true, rows, 1280, 768},  {"110M gate_up x@W^T", false, true, rows, 4096, 768},
      {"110M down  x@W^T", false, true, rows, 768, 2048},  {"110M lm_head x@W^T", false, true, rows, 32000, 768},
      {"110M dW    dy^T@x", true, false, 4096, 768, rows}, {"110M dx    dy@W", false, false, rows, 768, 4096},
      {"1b qkv     x@W^T", false, true, rows, 3072, 2048}, {"1b gate_up x@W^T", false, true, rows, 16384, 2048},
      {"1b down    x@W^T", false, true, rows, 2048, 8192},
  };
  for (const auto& s : b16) {
    const double work = 2.0 * s.m * s.n * s.k;
    const int reps = std::max(1, int(2e10 / work));
    const double h = bf16_gflops(s.ta, s.tb, s.m, s.n, s.k, reps);
    const double f = gflops(GemmImpl::kOpenBlas, s.ta, s.tb, s.m, s.n, s.k, reps);
    std::printf("%-24s %7.1f GF %7.1f GF %9.1f%%\n", s.what, h, f, 100.0 * (hw ? h / peak : h / f));
  }
  return 0;
}
