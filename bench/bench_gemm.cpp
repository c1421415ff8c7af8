// SGEMM on this machine: the measured peak (large square GEMM) and the
// model's own shapes, OpenBLAS vs Eigen in the same run. This is how the
// CPU backend's default GEMM was chosen.
// Usage: bench_gemm [rows=1024]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "backend/cpu/gemm.hpp"

using namespace llamaft::cpu;

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
  return 0;
}
