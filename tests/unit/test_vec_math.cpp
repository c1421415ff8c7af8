// cpu::exp_simd (backend/cpu/vec_math.hpp) against exp in long double: its
// error in ulps of the correctly rounded float, over a sweep of the float
// bit patterns in its range, and its edges. The row reductions (max_lanes,
// sum_lanes) against a sequential long-double sum and std::max, and the
// streaming fill against the element-by-element one at every alignment.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

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

TEST(VecMath, MaxLanesIsStdMaxAtEveryLengthAndPlace) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 30.f);
  for (int n : {1, 2, 15, 16, 17, 31, 33, 768, 32000, 32003}) {
    std::vector<float> x(n);
    for (float& v : x) v = nd(rng);
    for (int at : {0, n / 2, n - 1}) {  // the largest element in every lane and in the tail
      std::vector<float> y = x;
      y[at] = 1e6f;
      EXPECT_EQ(llamaft::cpu::max_lanes(y.data(), n), 1e6f) << "n " << n << " at " << at;
    }
    float ref = -INFINITY;
    for (float v : x) ref = std::max(ref, v);
    EXPECT_EQ(llamaft::cpu::max_lanes(x.data(), n), ref);
  }
  const float ninf = -std::numeric_limits<float>::infinity();
  std::vector<float> masked(40, ninf);
  EXPECT_EQ(llamaft::cpu::max_lanes(masked.data(), 40), ninf);
}

TEST(VecMath, SumLanesWithinItsDoubleBound) {
  // Terms of both signs and 12 decades: the bound is n * 2^-53 of the sum of |terms|.
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> u(-6.0, 6.0);
  for (int n : {1, 15, 16, 17, 49152, 100003}) {
    std::vector<float> x(n);
    long double exact = 0, abs_sum = 0;
    for (float& v : x) {
      v = static_cast<float>((rng() & 1 ? 1 : -1) * std::pow(10.0, u(rng)));
      exact += static_cast<long double>(v) * v * (v > 0 ? 1 : -1);
      abs_sum += static_cast<long double>(v) * v;
    }
    const double got = llamaft::cpu::sum_lanes(n, [&](int i) { return static_cast<double>(x[i]) * x[i] * (x[i] > 0 ? 1 : -1); });
    EXPECT_LE(std::fabs(static_cast<long double>(got) - exact), n * std::ldexp(1.0L, -53) * abs_sum) << "n " << n;
  }
}

TEST(VecMath, StreamingFillMatchesAtEveryAlignmentAndLength) {
  std::vector<float> buf(70000 + 64);
  for (int offset = 0; offset < 17; ++offset)
    for (size_t n : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{1000}, size_t{69999}}) {
      std::fill(buf.begin(), buf.end(), -1.f);
      llamaft::cpu::fill_streaming(buf.data() + offset, 0.25f, n);
      for (size_t i = 0; i < buf.size(); ++i) {
        const bool inside = i >= static_cast<size_t>(offset) && i < offset + n;
        ASSERT_EQ(buf[i], inside ? 0.25f : -1.f) << "offset " << offset << " n " << n << " i " << i;
      }
    }
}

}  // namespace
