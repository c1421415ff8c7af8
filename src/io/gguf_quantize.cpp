// fp32 -> ggml blocks; see gguf_quantize.hpp. Each function below is one
// block of ggml's reference quantizer for its type, written from the
// algorithm in ggml-quants.c (quantize_row_q8_0_ref, _q4_0_ref, _q5_0_ref,
// _q4_K_ref and _q5_K_ref with make_qkx2_quants, _q6_K_ref with
// make_qx_quants): the same
// float operations in the same order, so the bytes are the reference's.
// Compiled with -ffp-contract=off (CMakeLists.txt): an `a * b + c` fused
// into one rounding would change scales and therefore bytes.
#include "io/gguf_quantize.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "io/gguf.hpp"

namespace llamaft::io {

namespace {

constexpr int kQk = 32;    // Q8_0, Q4_0, Q5_0 block
constexpr int kQkK = 256;  // K-quant super-block
constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS

void store_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}
float f16_round(float v) { return f16_to_f32(f32_to_f16(v)); }

// ggml's nearest_int: round half to even through the 1.5 * 2^23 trick
// (valid for |v| <= 2^22 - 1, which every caller guarantees).
int nearest_int(float v) {
  const float shifted = v + 12582912.f;
  int32_t i;
  std::memcpy(&i, &shifted, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// The first value of largest magnitude (ties keep the earliest), as the
// references scan: `if (amax < fabsf(v)) { amax = fabsf(v); max = v; }`.
float signed_absmax(const float* x, int n) {
  float amax = 0.f, max = 0.f;
  for (int j = 0; j < n; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  return max;
}

// ---- 32-value blocks ------------------------------------------------------------------

// Q8_0: d(f16) qs[32]; d = amax / 127, q = roundf(x / d) (half away from 0).
void quantize_q8_0(const float* x, uint8_t* b) {
  float amax = 0.f;
  for (int j = 0; j < kQk; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.f;
  const float id = d != 0.f ? 1.f / d : 0.f;
  store_f16(b, d);
  for (int j = 0; j < kQk; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(x[j] * id)));
}

// Q4_0: d(f16) qs[16]; d = max / -8 (max: the signed value of largest
// magnitude), q = min(15, trunc(x / d + 8.5)); value j in the low nibble of
// byte j, value j + 16 in its high nibble.
void quantize_q4_0(const float* x, uint8_t* b) {
  const float d = signed_absmax(x, kQk) / -8.f;
  const float id = d != 0.f ? 1.f / d : 0.f;
  store_f16(b, d);
  for (int j = 0; j < kQk / 2; ++j) {
    const float x0 = x[j] * id, x1 = x[kQk / 2 + j] * id;
    const uint8_t q0 = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(x0 + 8.5f)));
    const uint8_t q1 = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(x1 + 8.5f)));
    b[2 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}

// Q5_0: d(f16) qh[4] qs[16]; d = max / -16, q = min(31, trunc(x / d +
// 16.5)); low nibbles as Q4_0, the fifth bit of value j in bit j of qh.
void quantize_q5_0(const float* x, uint8_t* b) {
  const float d = signed_absmax(x, kQk) / -16.f;
  const float id = d != 0.f ? 1.f / d : 0.f;
  store_f16(b, d);
  uint32_t qh = 0;
  for (int j = 0; j < kQk / 2; ++j) {
    const float x0 = x[j] * id, x1 = x[kQk / 2 + j] * id;
    const uint8_t q0 = static_cast<uint8_t>(std::min<int>(31, static_cast<int8_t>(x0 + 16.5f)));
    const uint8_t q1 = static_cast<uint8_t>(std::min<int>(31, static_cast<int8_t>(x1 + 16.5f)));
    b[6 + j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
    qh |= static_cast<uint32_t>((q0 & 0x10u) >> 4) << j;
    qh |= static_cast<uint32_t>((q1 & 0x10u) >> 4) << (j + kQk / 2);
  }
  std::memcpy(b + 2, &qh, 4);
}

// ---- Q4_K and Q5_K -------------------------------------------------------------------

// make_qkx2_quants(n = 32, nmax, x, weights, L, the_min, Laux, rmin, rdelta =
// 0.1, nstep, use_mad = false): an asymmetric scale and min for one
// 32-value sub-block, searched over nstep + 1 candidate scales minimising
// the weighted squared error. L receives the levels (0..nmax); returns the
// scale, *the_min = -min. Q4_K: nmax 15, rmin -1, nstep 20; Q5_K: nmax 31,
// rmin -0.5, nstep 15.
float make_qkx2_quants(int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, float rmin,
                       int nstep) {
  constexpr int n = 32;
  constexpr float rdelta = 0.1f;
  uint8_t laux[n];
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * L[i] + min - x[i];
    diff = diff * diff;
    best_error += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * laux[i] + this_min - x[i];
        diff = diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        std::memcpy(L, laux, n);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Q4_K's qs[128] from the block's 256 levels (0..15): each 32 bytes hold
// two sub-blocks, low nibbles then high nibbles.
void store_q4_k_levels(const uint8_t* L, uint8_t* q) {
  for (int j = 0; j < kQkK; j += 64) {
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    q += 32;
  }
}

// Q5_K's qh[32] then qs[128] from the block's 256 levels (0..31): the low
// four bits as in Q4_K, the fifth bits of sub-block pair p in bits 2p and
// 2p + 1 of qh.
void store_q5_k_levels(const uint8_t* L, uint8_t* qh) {
  uint8_t* ql = qh + 32;
  std::memset(qh, 0, 32);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < kQkK; n += 64) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j], l2 = L[n + j + 32];
      if (l1 > 15) {
        l1 -= 16;
        qh[j] |= m1;
      }
      if (l2 > 15) {
        l2 -= 16;
        qh[j] |= m2;
      }
      ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
    m1 = static_cast<uint8_t>(m1 << 2);
    m2 = static_cast<uint8_t>(m2 << 2);
    ql += 32;
  }
}

// Q4_K: d(f16) dmin(f16) scales[12] qs[128]; Q5_K adds qh[32] before qs.
// Eight sub-blocks of 32, each with a 6-bit scale and a 6-bit min relative
// to d and dmin (packed as io/gguf.cpp's k_scale_min reads them); then every
// value is requantized against the rounded scales. qs: each 32 bytes hold
// two sub-blocks (low nibbles, then high nibbles); Q5_K's fifth bits go to
// bit (2 * pair) and (2 * pair + 1) of qh[l].
void quantize_k_asymmetric(const float* x, uint8_t* b, bool five_bits) {
  const int nmax = five_bits ? 31 : 15;
  uint8_t L[kQkK];
  float weights[32], mins[8], scales[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(nmax, x + 32 * j, weights, L + 32 * j, &mins[j], five_bits ? -0.5f : -1.f,
                                 five_bits ? 15 : 20);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  uint8_t* sc = b + 4;
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < 8; ++j) {
    // nearest_int's int goes through uint8_t before MIN, as in the reference
    const uint8_t ls = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
    if (j < 4) {
      sc[j] = ls;
      sc[j + 4] = lm;
    } else {
      sc[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      sc[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      sc[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  store_f16(b, max_scale / 63.f);
  store_f16(b + 2, max_min / 63.f);
  const float d_all = f16_round(max_scale / 63.f), dmin_all = f16_round(max_min / 63.f);
  for (int j = 0; j < 8; ++j) {
    int s = 0, m = 0;
    if (j < 4) {
      s = sc[j] & 63;
      m = sc[j + 4] & 63;
    } else {
      s = (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4);
      m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
    }
    const float d = d_all * static_cast<float>(s);
    if (d == 0.f) continue;  // the levels stay as make_qkx2_quants left them
    const float dm = dmin_all * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
  if (five_bits) store_q5_k_levels(L, b + 16);
  else store_q4_k_levels(L, b + 16);
}

// ---- Q6_K ----------------------------------------------------------------------------

// make_qx_quants(n = 16, nmax = 32, rmse_type = 1, qw = NULL): a symmetric
// scale for one 16-value group, weights x^2, searched over 18 perturbed
// scales. L receives the levels (0..63).
float make_qx_quants(const float* x, int8_t* L) {
  constexpr int n = 16, nmax = 32;
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0.f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q6_K: ql[128] qh[64] scales[16] (int8) d(f16). Sixteen groups of 16 with
// an 8-bit scale relative to d; values requantized against the rounded
// scales to 6 bits (level - 32), packed as io/gguf.cpp's dequant_q6_k reads.
void quantize_q6_k(const float* x, uint8_t* b) {
  int8_t L[kQkK];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    const float scale = make_qx_quants(x + 16 * ib, L + 16 * ib);
    scales[ib] = scale;
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  uint8_t* ql = b;
  uint8_t* qh = b + 128;
  int8_t* sc = reinterpret_cast<int8_t*>(b + 192);
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(b, 0, 210);
    store_f16(b + 208, 0.f);
    return;
  }
  const float iscale = -128.f / max_scale;
  store_f16(b + 208, 1 / iscale);
  for (int ib = 0; ib < 16; ++ib) sc[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  const float d_all = f16_round(1 / iscale);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * static_cast<float>(sc[j]);
    if (d == 0.f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      int l = nearest_int(x[16 * j + ii] / d);
      l = std::max(-32, std::min(31, l));
      L[16 * j + ii] = static_cast<int8_t>(l + 32);
    }
  }
  const uint8_t* u = reinterpret_cast<const uint8_t*>(L);
  for (int j = 0; j < kQkK; j += 128) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t q1 = u[j + l + 0] & 0xF, q2 = u[j + l + 32] & 0xF;
      const uint8_t q3 = u[j + l + 64] & 0xF, q4 = u[j + l + 96] & 0xF;
      ql[l + 0] = static_cast<uint8_t>(q1 | (q3 << 4));
      ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
      qh[l] = static_cast<uint8_t>((u[j + l] >> 4) | ((u[j + l + 32] >> 4) << 2) | ((u[j + l + 64] >> 4) << 4) |
                                   ((u[j + l + 96] >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
}

// One row of n values.
void quantize_row(uint32_t type, const float* x, uint8_t* y, int64_t n) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32: std::memcpy(y, x, sizeof(float) * static_cast<size_t>(n)); return;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) store_f16(y + 2 * i, x[i]);
      return;
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(x[i]);
        std::memcpy(y + 2 * i, &h, 2);
      }
      return;
    case GgmlType::kQ8_0: for (int64_t k = 0; k < n / kQk; ++k) quantize_q8_0(x + k * kQk, y + k * 34); return;
    case GgmlType::kQ4_0: for (int64_t k = 0; k < n / kQk; ++k) quantize_q4_0(x + k * kQk, y + k * 18); return;
    case GgmlType::kQ5_0: for (int64_t k = 0; k < n / kQk; ++k) quantize_q5_0(x + k * kQk, y + k * 22); return;
    case GgmlType::kQ4_K:
      for (int64_t k = 0; k < n / kQkK; ++k) quantize_k_asymmetric(x + k * kQkK, y + k * 144, false);
      return;
    case GgmlType::kQ5_K:
      for (int64_t k = 0; k < n / kQkK; ++k) quantize_k_asymmetric(x + k * kQkK, y + k * 176, true);
      return;
    case GgmlType::kQ6_K: for (int64_t k = 0; k < n / kQkK; ++k) quantize_q6_k(x + k * kQkK, y + k * 210); return;
    default: break;
  }
  LLAMAFT_CHECK(false, "quantize_row: type ", ggml_type_name(type), " is not written");
}

}  // namespace

bool ggml_type_quantizable(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32: case GgmlType::kF16: case GgmlType::kBF16: case GgmlType::kQ8_0: case GgmlType::kQ4_0:
    case GgmlType::kQ5_0: case GgmlType::kQ4_K: case GgmlType::kQ5_K: case GgmlType::kQ6_K:
      return true;
    default:
      return false;
  }
}

int64_t ggml_row_bytes(uint32_t type, int64_t n) {
  const int64_t bv = ggml_block_values(type);
  LLAMAFT_CHECK(bv > 0 && n % bv == 0, "ggml_row_bytes: ", n, " values are not whole ", ggml_type_name(type), " blocks");
  return n / bv * ggml_block_bytes(type);
}

void quantize_gguf_rows(uint32_t type, const float* src, uint8_t* dst, int64_t rows, int64_t n_per_row) {
  LLAMAFT_CHECK(ggml_type_quantizable(type), "quantize_gguf_rows: ", ggml_type_name(type), " is not written");
  const int64_t row_bytes = ggml_row_bytes(type, n_per_row);
#pragma omp parallel for schedule(static) if (rows * n_per_row >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r) quantize_row(type, src + r * n_per_row, dst + r * row_bytes, n_per_row);
}

}  // namespace llamaft::io
