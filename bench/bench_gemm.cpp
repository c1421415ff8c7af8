// SGEMM on this machine: the measured peak (large square GEMM) and the
// model's own shapes, OpenBLAS vs Eigen in the same run. This is how the
// CPU backend's default GEMM was chosen.
//
// Then the bf16 GEMMs (train.param_dtype = bf16, backend/cpu/gemm_bf16.hpp)
// on the shapes of the 110M model and llama3.2-1b, on the path this CPU runs:
// against the bf16 peak of the instructions that path runs, measured here:
// with AMX (oneDNN's kernels use its tiles), a register-resident TDPBF16PS
// loop (16 x 16 x 32, 16,384 FLOP per instruction); with AVX512-BF16 alone, a
// VDPBF16PS loop (64 FLOP per instruction); and against the SGEMM on the
// same shape (what the widened path costs over fp32) elsewhere. A GEMM that
// measures above that peak raises it (reported): no shape shows more than
// 100%. (The VDPBF16PS loop used to be the peak on AMX machines too, and
// the GEMMs showed 547-641% of it.)
// Usage: bench_gemm [rows=1024]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "backend/cpu/gemm.hpp"
#include "backend/cpu/gemm_bf16.hpp"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
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

// AMX-BF16 and AMX-TILE (CPUID.7.0:EDX bits 22 and 24), and the kernel's
// permission to use the tile data (arch_prctl ARCH_REQ_XCOMP_PERM, as oneDNN
// asks for it).
bool amx_usable() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24))) return false;
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

// Four independent accumulator tiles (16 x 16 fp32), two A tiles (16 x 32
// bf16) and two B tiles, all in registers: TDPBF16PS at its throughput.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
__attribute__((target("amx-tile,amx-bf16"))) double amx_peak_gflops() {
  const long iters = 4000000;
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel
  {
    TileConfig cfg;
    for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
    alignas(64) uint16_t ab[16 * 32];
    for (auto& x : ab) x = 0x3f80;  // 1.0
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, ab, 64);
    _tile_loadd(5, ab, 64);
    _tile_loadd(6, ab, 64);
    _tile_loadd(7, ab, 64);
    const long mine = iters / omp_get_num_threads();
    for (long it = 0; it < mine; ++it) {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
    alignas(64) float out[16 * 16];
    _tile_stored(0, out, 64);
    _tile_release();
    if (out[0] == 1.2345f) std::printf(" ");
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 4.0 * 16384 * iters / s / 1e9;
}
#else
double bf16_peak_gflops() { return 0; }
bool amx_usable() { return false; }
double amx_peak_gflops() { return 0; }
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

  const bool hw = cpu_has_avx512_bf16() && bf16_gemm_path() == Bf16GemmPath::kOneDnn;
  const bool amx = hw && amx_usable();
  const double vdp = hw ? bf16_peak_gflops() : 0;
  const double tdp = amx ? amx_peak_gflops() : 0;
  double peak = amx ? tdp : vdp;
  std::printf("\nbf16 GEMMs, path: %s", bf16_gemm_path_name(bf16_gemm_path()));
  if (amx) std::printf("; measured bf16 peak (AMX TDPBF16PS loop) %.1f GFLOP/s (VDPBF16PS loop %.1f)", tdp, vdp);
  else if (hw) std::printf("; measured bf16 peak (VDPBF16PS loop, no AMX) %.1f GFLOP/s", peak);
  else std::printf("; the widened path (no AVX512-BF16, or LLAMAFT_BF16_GEMM=widened): compared with SGEMM");
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
    if (hw && h > peak) {
      std::printf("(this GEMM ran above the measured peak %.1f: the peak is raised to it)\n", peak);
      peak = h;
    }
    std::printf("%-24s %7.1f GF %7.1f GF %9.1f%%\n", s.what, h, f, 100.0 * (hw ? h / peak : h / f));
  }
  return 0;
}
