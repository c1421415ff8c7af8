// bf16 / fp16 <-> fp32 conversions usable on host and device.
// Round-to-nearest-even; NaN stays NaN (quieted); fp16 handles subnormals,
// overflow to inf and the 2^-25 tie. Bit casts use __float_as_uint on the
// device; on the host std::memcpy (the only well-defined C++17 cast, folded
// to a register move by the compiler) rather than union punning, which is UB.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/host_device.hpp"

namespace llamaft {

LLAMAFT_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  return __builtin_bit_cast(uint32_t, f);  // (a memcpy here kept the CPU's bf16 loops from vectorizing)
#endif
}
LLAMAFT_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  return __builtin_bit_cast(float, u);
#endif
}

LLAMAFT_HD float bf16_to_f32(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

LLAMAFT_HD uint16_t f32_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  const uint32_t nan = (u >> 16) | 0x0040u;  // quiet NaN
  // A select, not an early return, so the CPU's loops over bf16 vectorize.
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : (u + rounding) >> 16);
}

LLAMAFT_HD float f16_to_f32(uint16_t h) {
  const uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf / nan
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);
    // subnormal: normalise
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    mant &= 0x3ffu;
    return bits_float(sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | (mant << 13));
  }
  return bits_float(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

LLAMAFT_HD uint16_t f32_to_f16(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);  // < 2^-25 rounds to 0
    const uint32_t e = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 113 - e + 13
    const uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    const uint32_t rounded = half + (rem > mid || (rem == mid && (half & 1u)));
    return static_cast<uint16_t>(sign | rounded);
  }
  const uint32_t rebased = abs - (112u << 23);  // exponent 127 -> 15
  const uint32_t rounding = 0xfffu + ((rebased >> 13) & 1u);
  return static_cast<uint16_t>(sign | ((rebased + rounding) >> 13));
}

// A bf16 value in storage: the model's activations and gathered weights when
// the CUDA backend computes in bf16. Layout-compatible with __nv_bfloat16 (two
// bytes, the high half of an fp32); conversions round to nearest even, so a
// kernel templated on its storage type T loads with static_cast<float>(x)
// and stores with static_cast<T>(y) for float and bf16 alike.
struct bf16 {
  uint16_t bits;
  bf16() = default;
  LLAMAFT_HD explicit bf16(float f) : bits(f32_to_bf16(f)) {}
  LLAMAFT_HD explicit operator float() const { return bf16_to_f32(bits); }
};
static_assert(sizeof(bf16) == 2, "bf16 is two bytes");

}  // namespace llamaft
