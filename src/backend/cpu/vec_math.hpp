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
#include <cstdint>

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

}  // namespace llamaft::cpu
