// exp for the CPU backend's long elementwise loops (softmax rows, the loss
// head, SwiGLU): branch-free and inline, so GCC vectorizes a loop that calls
// it under `#pragma omp simd` (glibc's expf is a scalar call, ~20 cycles an
// element, which held attention at 3% of the GEMM peak).
//
// Cephes' expf (S. L. Moshier): x = n ln2 + r with ln2 split in two (Cody
// and Waite) so r is exact, |r| <= ln2/2, e^r by a degree-6 polynomial, and
// 2^n put into the exponent bits. tests/unit/test_vec_math.cpp bounds its
// error by 2 ulp of the true value over a sweep of [-87.3, 88] (it measures
// 0.99 ulp at worst; glibc's expf is within 1). Below -87.33 (where e^x < 2^-126) the result is 0:
// those terms are under 2^-126 of a softmax sum that is at least 1. NaN in,
// NaN out, so a non-finite logit still reaches the loss.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include <immintrin.h>
#include <omp.h>

#include "backend/row_math.hpp"
#include "core/dtype.hpp"

namespace llamaft::cpu {

inline float exp_simd(float x) {
  constexpr float kLo = -87.33654f, kHi = 88.0f;  // 2^n stays a normal float for n in [-126, 127]
  const bool under = x < kLo;
  float c = x < kLo ? kLo : x;  // NaN passes both comparisons unchanged
  c = c > kHi ? kHi : c;
  const float cn = c == c ? c : 0.0f;  // NaN: any n (y is NaN); 0 keeps the conversion defined
  // n = x / ln2 rounded to nearest: adding 1.5 * 2^23 leaves no fraction bits
  // (std::floor would be a library call here: GCC inlines it only without
  // trapping math). |r| <= ln2/2 either way.
  constexpr float kRound = 12582912.0f;
  const float n = (cn * 1.44269504088896341f + kRound) - kRound;
  float r = c - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float z = r * r;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  const float scale = bits_float(bits);
  return under ? 0.0f : y * scale;
}

// rowmath::sigmoidf_ (1 / (1 + e^-x), the same operations) with exp_simd.
inline float sigmoid_simd(float x) { return 1.0f / (1.0f + exp_simd(-x)); }

// ---- Row reductions with independent accumulators -----------------------------
// One accumulator waits on every addition's latency (4 cycles): a scalar
// max or double sum over a row ran at a quarter of an element per cycle and
// held RMSNorm at 5 GB/s and the loss head's max at 40% of its time (perf).
// kLanes partial results, one per element index modulo kLanes, vectorize and
// pipeline. The order depends only on n, so results are deterministic.
constexpr int kLanes = 16;

// The largest x[i] as std::max folds it (a NaN element is skipped, as there;
// the passes that follow still meet it). Max is exact in any order.
inline float max_lanes(const float* x, int n) {
  float lane[kLanes];
  for (float& l : lane) l = -INFINITY;
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lane[j] = lane[j] < x[i + j] ? x[i + j] : lane[j];
  float m = -INFINITY;
  for (; i < n; ++i) m = m < x[i] ? x[i] : m;
  for (float l : lane) m = m < l ? l : m;
  return m;
}

// The sum over i < n of term(i), a double, in kLanes partial sums. Each
// partial sum's rounding error is at most its length * 2^-53 relative, so
// the total's is at most n * 2^-53, as for one sequential double sum.
template <typename Term>
inline double sum_lanes(int n, Term term) {
  double lane[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lane[j] += term(i + j);
  for (int j = 0; i < n; ++i, ++j) lane[j] += term(i);
  double s = 0.0;
  for (double l : lane) s += l;
  return s;
}

// One RMSNorm row: y = x * rstd * w, its sum of squares in double (exact
// products of fp32 values, error at most dim * 2^-53 relative before the one
// rounding to fp32, where fp32 additions would grow as dim * 2^-24).
inline float rmsnorm_row_fwd(const float* x, const float* w, float* y, int dim, float eps) {
  const double ss = sum_lanes(dim, [&](int i) { return static_cast<double>(x[i]) * x[i]; });
  const float rstd = rowmath::rmsnorm_rstd(static_cast<float>(ss), dim, eps);
  for (int i = 0; i < dim; ++i) y[i] = x[i] * rstd * w[i];
  return rstd;
}

// Its backward: dx is overwritten; dw accumulates (dw_i += dy_i * x_i * rstd).
inline void rmsnorm_row_bwd(const float* dy, const float* x, const float* w, float rstd, float* dx, float* dw,
                            int dim) {
  const double dot = sum_lanes(dim, [&](int i) { return static_cast<double>(w[i] * dy[i]) * x[i]; });
  const float mean = static_cast<float>(dot / dim);
  for (int i = 0; i < dim; ++i) dx[i] = rowmath::rmsnorm_dx_elem(x[i], w[i], dy[i], rstd, mean);
  if (dw)
    for (int i = 0; i < dim; ++i) dw[i] += dy[i] * x[i] * rstd;
}

// x(n) = value with non-temporal stores where AVX is there: an ordinary
// store first reads each line it writes (read for ownership), so filling a
// buffer larger than the caches moved twice its bytes (the zeroed gradient:
// 16 GB/s against a 23 GB/s copy). Each thread's block starts on a 64-byte
// line; the ends are plain stores. The sfence orders the streamed stores
// before anything another thread does after the parallel region.
inline void fill_streaming(float* x, float value, size_t n) {
#pragma omp parallel
  {
    const size_t nt = static_cast<size_t>(omp_get_num_threads()), t = static_cast<size_t>(omp_get_thread_num());
    size_t i = n * t / nt;
    const size_t end = n * (t + 1) / nt;
#if defined(__AVX512F__) || defined(__AVX__)
#if defined(__AVX512F__)
    constexpr size_t kW = 16;
    const __m512 vv = _mm512_set1_ps(value);
#else
    constexpr size_t kW = 8;
    const __m256 vv = _mm256_set1_ps(value);
#endif
    for (; i < end && reinterpret_cast<uintptr_t>(x + i) % 64 != 0; ++i) x[i] = value;
    for (; i + kW <= end; i += kW) {
#if defined(__AVX512F__)
      _mm512_stream_ps(x + i, vv);
#else
      _mm256_stream_ps(x + i, vv);
#endif
    }
    _mm_sfence();
#endif
    for (; i < end; ++i) x[i] = value;
  }
}

}  // namespace llamaft::cpu
