// What the CPU's two attentions share (cpu_backend.cpp's fp32 one and
// attention_bf16.cpp's on the bf16 GEMMs): query blocks of kQueryBlock rows,
// each query's allowed keys, the forward's row from scores to the
// unnormalised exponentials, and the row of the backward pass from the
// recomputed scores to P and dS.
#pragma once

#include <algorithm>
#include <cstddef>

#include "backend/attn_shape.hpp"
#include "backend/cpu/vec_math.hpp"

namespace llamaft::cpu {

constexpr int kQueryBlock = 64;

// Allowed key range [lo, hi) for query t of batch row b.
inline void key_range(const AttnShape& s, int b, int t, int* lo, int* hi) {
  *hi = std::min(s.tk, s.q_offset + t + 1);
  *lo = s.doc_start ? s.doc_start[static_cast<size_t>(b) * s.tq + t] : 0;
}

// Query block qb: its first query t0, its rows, and the keys [0, kend) any of them may see.
struct QueryBlock {
  int t0, rows, kend;
  QueryBlock(const AttnShape& s, int qb) {
    t0 = qb * kQueryBlock;
    const int t1 = std::min(s.tq, t0 + kQueryBlock);
    rows = t1 - t0;
    kend = std::min(s.tk, s.q_offset + t1);
  }
};

// One query row of attention's forward, over its kend keys, of which
// [lo, hi) are allowed: row (the scores in) becomes exp(score - max) there
// and 0 elsewhere. Returns the max and sets *sum to the exponentials' sum,
// in double (as the loss head's, for long contexts); the row's log-sum-exp
// is max + log(sum).
inline float softmax_row_exp(float* row, int kend, int lo, int hi, double* sum) {
  const float mx = max_lanes(row + lo, hi - lo);
#pragma omp simd
  for (int j = 0; j < kend; ++j) row[j] = (j >= lo && j < hi) ? exp_simd(row[j] - mx) : 0.f;
  *sum = sum_lanes(kend, [&](int j) { return static_cast<double>(row[j]); });
  return mx;
}

// One query row of attention's backward, over its kend keys, of which
// [lo, hi) are allowed: p (scores in, scale * p - lse the log-probabilities)
// becomes P, and dp (dO V^T in) becomes dS = P (dP - D); both 0 elsewhere.
// The fp32 attention passes scale 1 (its GEMM applied the scale).
inline void attention_row_grad(float* p, float* dp, int kend, int lo, int hi, float scale, float lse, float D) {
#pragma omp simd
  for (int j = 0; j < kend; ++j) {
    const bool ok = j >= lo && j < hi;
    const float pj = ok ? exp_simd(p[j] * scale - lse) : 0.f;
    p[j] = pj;
    dp[j] = ok ? pj * (dp[j] - D) : 0.f;
  }
}

}  // namespace llamaft::cpu
