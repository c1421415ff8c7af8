// Row and element math shared by the CPU backend and the CUDA kernels.
// Everything here is a __host__ __device__ inline function, so the CPU tests
// exercise exactly the arithmetic the GPU runs. No CUDA headers are needed:
// LLAMAFT_HD (core/host_device.hpp) is plain inline in g++ builds.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.hpp"
#include "core/ignore_index.hpp"

namespace llamaft::rowmath {

using ::llamaft::kIgnoreIndex;  // rowmath::kIgnoreIndex, as the kernels spell it

// SplitMix64's finaliser: a counter-based hash, so a dropout mask depends only
// on its keys and never on the order or the device that computes it.
LLAMAFT_HD uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Inverted dropout: element `idx` of the row keyed `row_key` (a salt per use
// site) is zeroed with probability p and scaled by 1 / (1 - p) otherwise.
LLAMAFT_HD float dropout_factor(uint64_t row_key, uint64_t salt, uint64_t idx, float p) {
  const uint64_t h = mix64(row_key ^ mix64(salt * 0x100000001B3ull + idx));
  const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);  // 24 random bits in [0, 1)
  return u < p ? 0.f : 1.f / (1.f - p);
}

// ---- RMSNorm: y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps) --------------
LLAMAFT_HD float rmsnorm_rstd(float sum_sq, int dim, float eps) {
  return 1.0f / sqrtf(sum_sq / static_cast<float>(dim) + eps);
}

// The CPU backend's row loops (cpu/vec_math.hpp: rmsnorm_row_fwd and
// rmsnorm_row_bwd) and the CUDA kernel, which splits the sums across a block,
// finish with these same formulas.
// dx_i = rstd * (w_i dy_i - x_i * rstd^2 * mean_j(w_j dy_j x_j))
LLAMAFT_HD float rmsnorm_dx_elem(float x, float w, float dy, float rstd, float mean_wdyx) {
  return rstd * (w * dy - x * rstd * rstd * mean_wdyx);
}

// ---- RoPE, Hugging Face rotate_half convention -------------------------------
// For head vector x of size hd, pair (i, i + hd/2) for i < hd/2 rotates by
// angle = pos * inv_freq[i]:  y_i = x_i c - x_{i+h} s,  y_{i+h} = x_{i+h} c + x_i s.
// Backward is the rotation by -angle.
LLAMAFT_HD void rope_rotate(float& a, float& b, float c, float s) {
  const float x0 = a, x1 = b;
  a = x0 * c - x1 * s;
  b = x1 * c + x0 * s;
}

// ---- SwiGLU: out = silu(g) * u -------------------------------------------------
LLAMAFT_HD float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }
LLAMAFT_HD float silu(float x) { return x * sigmoidf_(x); }
LLAMAFT_HD float swiglu_fwd(float g, float u) { return silu(g) * u; }
// d/dg silu(g) = s (1 + g (1 - s)), s = sigmoid(g)
LLAMAFT_HD void swiglu_bwd(float dout, float g, float u, float& dg, float& du) {
  const float s = sigmoidf_(g);
  du = dout * g * s;
  dg = dout * u * s * (1.0f + g * (1.0f - s));
}

// ---- Cross-entropy over one row of logits ------------------------------------
// Online max/sum combine, used by both the row loop and the chunked kernels.
struct SoftmaxStat {
  float max;
  float sum;  // sum exp(x - max)
};
LLAMAFT_HD SoftmaxStat softmax_stat_init() { return {-INFINITY, 0.f}; }
LLAMAFT_HD SoftmaxStat softmax_stat_push(SoftmaxStat s, float x) {
  if (x > s.max) {
    s.sum = s.sum * expf(s.max - x) + 1.f;
    s.max = x;
  } else {
    s.sum += expf(x - s.max);
  }
  return s;
}
LLAMAFT_HD SoftmaxStat softmax_stat_merge(SoftmaxStat a, SoftmaxStat b) {
  if (b.max == -INFINITY) return a;
  if (a.max == -INFINITY) return b;
  const float m = a.max > b.max ? a.max : b.max;
  return {m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}
LLAMAFT_HD float softmax_stat_lse(SoftmaxStat s) { return s.max + logf(s.sum); }

// Grad of (scale * NLL) w.r.t. one logit: scale * (softmax_i - [i == label]).
LLAMAFT_HD float ce_grad_elem(float logit, float lse, bool is_label, float scale) {
  return scale * (expf(logit - lse) - (is_label ? 1.f : 0.f));
}

// ---- AdamW (torch.optim.AdamW semantics, fp32 params) -----------------------------
// p <- p * (1 - lr wd) ; m <- b1 m + (1-b1) g ; v <- b2 v + (1-b2) g^2 ;
// p <- p - step_size * m / (sqrt(v) / sqrt(1 - b2^t) + eps), step_size = lr / (1 - b1^t)
// The scalars are computed in double on the host, as torch does in Python.
struct AdamWParams {
  float beta1, beta2, eps;
  float decay_mult;   // 1 - lr * weight_decay
  float step_size;    // lr / (1 - beta1^t)
  float bc2_sqrt;     // sqrt(1 - beta2^t)
  float grad_scale;   // multiplies g first (the clipping coefficient)
};
LLAMAFT_HD void adamw_elem(float& p, float& m, float& v, float g, const AdamWParams& a) {
  g *= a.grad_scale;
  p *= a.decay_mult;
  m = m * a.beta1 + g * (1.f - a.beta1);
  v = v * a.beta2 + g * g * (1.f - a.beta2);
  const float denom = sqrtf(v) / a.bc2_sqrt + a.eps;
  p = p + (-a.step_size) * m / denom;
}

}  // namespace llamaft::rowmath
