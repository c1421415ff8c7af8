// Deterministic random numbers that do not depend on the standard library's
// distributions (which differ between implementations): SplitMix64 streams,
// uniform floats and Box-Muller normals. A stream is keyed by (seed, id), so
// any rank can produce any slice of a tensor's initial values on its own.
#pragma once

#include <cmath>
#include <cstdint>

namespace llamaft {

class Rng {
 public:
  explicit Rng(uint64_t seed, uint64_t stream = 0) : state_(mix(seed ^ mix(stream + 0x9E3779B97F4A7C15ull))) {}

  uint64_t next_u64() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    return mix(z);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
  // Standard normal (Box-Muller; one value per call, deterministic). Every
  // call takes exactly two draws, so a stream can be split with skip(2 * i):
  // the 2^-53-likely u1 = 0 becomes 2^-54 instead of a third draw.
  double normal() {
    double u1 = uniform();
    if (u1 <= 0.0) u1 = 0x1p-54;
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Skip ahead n draws of next_u64 (SplitMix64 is a counter).
  void skip(uint64_t n) { state_ += n * 0x9E3779B97F4A7C15ull; }

 private:
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

}  // namespace llamaft
