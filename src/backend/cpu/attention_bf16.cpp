#include "backend/cpu/attention_bf16.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/vec_math.hpp"

namespace llamaft::cpu {
namespace {

constexpr int kQueryBlock = 64;  // as cpu_backend.cpp's fp32 attention
constexpr int kMinRows = 16;     // fewer queries (decoding) stay on the widened path

// Allowed key range [lo, hi) for query t of batch row b.
void key_range(const AttnShape& s, int b, int t, int* lo, int* hi) {
  *hi = std::min(s.tk, s.q_offset + t + 1);
  *lo = s.doc_start ? s.doc_start[static_cast<size_t>(b) * s.tq + t] : 0;
}

// The query block of one task and the keys it may see.
struct QueryBlock {
  int t0, rows, kend;
  QueryBlock(const AttnShape& s, int qb) {
    t0 = qb * kQueryBlock;
    const int t1 = std::min(s.tq, t0 + kQueryBlock);
    rows = t1 - t0;
    kend = std::min(s.tk, s.q_offset + t1);
  }
};

void round_into(const float* x, bf16* y, int n) {
  for (int i = 0; i < n; ++i) y[i] = bf16(x[i]);
}

}  // namespace

bool attention_bf16_gemms_apply(const AttnShape& s, Bf16GemmPath path) {
  return path == Bf16GemmPath::kOneDnn && (s.head_dim == 64 || s.head_dim == 128) && s.tq >= kMinRows;
}

void attention_fwd_bf16_gemms(Bf16GemmPath path, GemmImpl impl, const AttnShape& s, const bf16* q, const bf16* k,
                              const bf16* v, bf16* out, float* lse) {
  const int group = s.n_heads / s.n_kv_heads, hd = s.head_dim;
  const int n_qblocks = (s.tq + kQueryBlock - 1) / kQueryBlock;
  const int tasks = s.batch * s.n_heads * n_qblocks;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(kQueryBlock) * s.tk);  // S, then exp(S - max): (rows, kend)
    std::vector<bf16> p(scores.size());                                   // P unnormalised, rounded
    std::vector<float> o(static_cast<size_t>(kQueryBlock) * hd);          // P V in fp32: (rows, hd)
    float inv_sum[kQueryBlock];
#pragma omp for schedule(dynamic)
    for (int task = 0; task < tasks; ++task) {
      const int qb = task % n_qblocks, h = (task / n_qblocks) % s.n_heads, b = task / (n_qblocks * s.n_heads);
      const int g = h / group;
      const QueryBlock blk(s, qb);
      const size_t qrow0 = static_cast<size_t>(b) * s.tq + blk.t0;
      const bf16* qh = q + qrow0 * s.ldq + h * hd;
      const bf16* kg = k + static_cast<size_t>(b) * s.tk * s.ldk + g * hd;
      const bf16* vg = v + static_cast<size_t>(b) * s.tk * s.ldv + g * hd;
      float* S = scores.data();
      gemm_bf16(path, impl, false, true, blk.rows, blk.kend, hd, s.scale, qh, s.ldq, kg, s.ldk, 0.f, S, blk.kend);
      for (int r = 0; r < blk.rows; ++r) {
        int lo, hi;
        key_range(s, b, blk.t0 + r, &lo, &hi);
        float* row = S + static_cast<size_t>(r) * blk.kend;
        float mx = -INFINITY;
        for (int j = lo; j < hi; ++j) mx = std::max(mx, row[j]);
#pragma omp simd
        for (int j = 0; j < blk.kend; ++j) row[j] = (j >= lo && j < hi) ? exp_simd(row[j] - mx) : 0.f;
        double se = 0.0;
#pragma omp simd reduction(+ : se)
        for (int j = 0; j < blk.kend; ++j) se += row[j];
        inv_sum[r] = static_cast<float>(1.0 / se);  // O is divided by the fp32 row sum after P V
        round_into(row, p.data() + static_cast<size_t>(r) * blk.kend, blk.kend);
        lse[(static_cast<size_t>(b) * s.n_heads + h) * s.tq + blk.t0 + r] = mx + static_cast<float>(std::log(se));
      }
      gemm_bf16(path, impl, false, false, blk.rows, hd, blk.kend, 1.f, p.data(), blk.kend, vg, s.ldv, 0.f, o.data(),
                hd);
      for (int r = 0; r < blk.rows; ++r) {
        bf16* oh = out + (qrow0 + r) * s.ldo + h * hd;
        const float* orow = o.data() + static_cast<size_t>(r) * hd;
        for (int i = 0; i < hd; ++i) oh[i] = bf16(orow[i] * inv_sum[r]);
      }
    }
  }
}

void attention_bwd_bf16_gemms(Bf16GemmPath path, GemmImpl impl, const AttnShape& s, const bf16* q, const bf16* k,
                              const bf16* v, const bf16* out, const float* lse, const bf16* dout, bf16* dq,
                              bf16* dk, bf16* dv) {
  const int group = s.n_heads / s.n_kv_heads, hd = s.head_dim;
  const int n_qblocks = (s.tq + kQueryBlock - 1) / kQueryBlock;
  const int tasks = s.batch * s.n_kv_heads;  // each task owns dk/dv of one (b, kv head)
#pragma omp parallel
  {
    const size_t block = static_cast<size_t>(kQueryBlock) * s.tk;
    std::vector<float> P(block), dP(block);                  // (rows, kend) each
    std::vector<bf16> p16(block), ds16(block);               // P and dS rounded
    std::vector<float> dqf(static_cast<size_t>(kQueryBlock) * hd);  // (rows, hd)
    std::vector<float> dkf(static_cast<size_t>(s.tk) * hd), dvf(dkf.size());  // (tk, hd), fp32 sums
#pragma omp for schedule(dynamic)
    for (int task = 0; task < tasks; ++task) {
      const int g = task % s.n_kv_heads, b = task / s.n_kv_heads;
      const bf16* kg = k + static_cast<size_t>(b) * s.tk * s.ldk + g * hd;
      const bf16* vg = v + static_cast<size_t>(b) * s.tk * s.ldv + g * hd;
      std::fill(dkf.begin(), dkf.end(), 0.f);
      std::fill(dvf.begin(), dvf.end(), 0.f);
      for (int h = g * group; h < (g + 1) * group; ++h) {
        for (int qb = 0; qb < n_qblocks; ++qb) {
          const QueryBlock blk(s, qb);
          const int rows = blk.rows, kend = blk.kend;
          const size_t qrow0 = static_cast<size_t>(b) * s.tq + blk.t0;
          const bf16* qh = q + qrow0 * s.ldq + h * hd;
          const bf16* oh = out + qrow0 * s.ldo + h * hd;
          const bf16* doh = dout + qrow0 * s.ldo + h * hd;
          const float* lse_h = lse + (static_cast<size_t>(b) * s.n_heads + h) * s.tq + blk.t0;
          // P = softmax(scale Q K^T) recomputed from lse; dP = dO V^T
          gemm_bf16(path, impl, false, true, rows, kend, hd, s.scale, qh, s.ldq, kg, s.ldk, 0.f, P.data(), kend);
          gemm_bf16(path, impl, false, true, rows, kend, hd, 1.f, doh, s.ldo, vg, s.ldv, 0.f, dP.data(), kend);
          for (int r = 0; r < rows; ++r) {
            int lo, hi;
            key_range(s, b, blk.t0 + r, &lo, &hi);
            const bf16* o_r = oh + static_cast<size_t>(r) * s.ldo;
            const bf16* do_r = doh + static_cast<size_t>(r) * s.ldo;
            float D = 0.f;  // rowsum(dO * O)
            for (int i = 0; i < hd; ++i) D += static_cast<float>(do_r[i]) * static_cast<float>(o_r[i]);
            float* p = P.data() + static_cast<size_t>(r) * kend;
            float* ds = dP.data() + static_cast<size_t>(r) * kend;
            const float lse_r = lse_h[r];
#pragma omp simd
            for (int j = 0; j < kend; ++j) {
              const bool ok = j >= lo && j < hi;
              const float pj = ok ? exp_simd(p[j] - lse_r) : 0.f;
              p[j] = pj;
              ds[j] = ok ? pj * (ds[j] - D) : 0.f;
            }
            round_into(p, p16.data() + static_cast<size_t>(r) * kend, kend);
            round_into(ds, ds16.data() + static_cast<size_t>(r) * kend, kend);
          }
          // dQ = scale dS K (this block's rows, once); dK += scale dS^T Q; dV += P^T dO
          gemm_bf16(path, impl, false, false, rows, hd, kend, s.scale, ds16.data(), kend, kg, s.ldk, 0.f,
                    dqf.data(), hd);
          for (int r = 0; r < rows; ++r)
            round_into(dqf.data() + static_cast<size_t>(r) * hd, dq + (qrow0 + r) * s.ldq + h * hd, hd);
          gemm_bf16(path, impl, true, false, kend, hd, rows, s.scale, ds16.data(), kend, qh, s.ldq, 1.f, dkf.data(),
                    hd);
          gemm_bf16(path, impl, true, false, kend, hd, rows, 1.f, p16.data(), kend, doh, s.ldo, 1.f, dvf.data(), hd);
        }
      }
      for (int t = 0; t < s.tk; ++t) {
        round_into(dkf.data() + static_cast<size_t>(t) * hd, dk + (static_cast<size_t>(b) * s.tk + t) * s.ldk + g * hd,
                   hd);
        round_into(dvf.data() + static_cast<size_t>(t) * hd, dv + (static_cast<size_t>(b) * s.tk + t) * s.ldv + g * hd,
                   hd);
      }
    }
  }
}

}  // namespace llamaft::cpu
