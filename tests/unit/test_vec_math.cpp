// cpu::exp_simd (backend/cpu/vec_math.hpp) against exp in long double: its
// error in ulps of the correctly rounded float, over a sweep of the float
// bit patterns in its range, and its edges.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "backend/cpu/vec_math.hpp"

namespace {

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

// |got - exact| in units of the float spacing at the exact value.
double ulps(float got, long double exact) {
  const float r = static_cast<float>(exact);
  const double spacing = std::nextafter(std::fabs(r), std::numeric_limits<float>::infinity()) - std::fabs(r);
  return static_cast<double>(std::fabs(static_cast<long double>(got) - exact) / spacing);
}

TEST(VecMath, ExpWithinTwoUlpOverItsRange) {
  // Every 211th bit pattern of the floats in [-87.3, 88], plus every 101st in [-1, 1].
  double worst = 0;
  float at = 0;
  auto probe = [&](float x) {
    if (!(x >= -87.3f && x <= 88.0f)) return;
    const double e = ulps(llamaft::cpu::exp_simd(x), std::exp(static_cast<long double>(x)));
    if (e > worst) worst = e, at = x;
  };
  for (uint64_t b = 0; b < 0x80000000ull; b += 211) {
    probe(from_bits(static_cast<uint32_t>(b)));
    probe(from_bits(static_cast<uint32_t>(b) | 0x80000000u));
  }
  for (uint32_t b = 0; b <= 0x3f800000u; b += 101) {
    probe(from_bits(b));
    probe(from_bits(b | 0x80000000u));
  }
  std::printf("exp_simd: worst %.3f ulp at x = %.9g\n", worst, at);
  EXPECT_LE(worst, 2.0) << "at x = " << at;
}

TEST(VecMath, ExpEdges) {
  using llamaft::cpu::exp_simd;
  EXPECT_EQ(exp_simd(0.0f), 1.0f);
  EXPECT_EQ(exp_simd(-std::numeric_limits<float>::infinity()), 0.0f);  // masked softmax entries
  EXPECT_EQ(exp_simd(-100.0f), 0.0f);  // below 2^-126: flushed
  EXPECT_GT(exp_simd(-87.0f), 0.0f);
  EXPECT_TRUE(std::isnan(exp_simd(std::numeric_limits<float>::quiet_NaN())));  // a NaN logit reaches the loss
  EXPECT_TRUE(std::isfinite(exp_simd(88.0f)));
}

}  // namespace
