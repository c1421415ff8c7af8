#include "backend/cpu/attention_bf16.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/attention_blocks.hpp"

namespace llamaft::cpu {
namespace {

constexpr int kMinRows = 16;  // fewer queries (decoding) stay on the widened path

// y = bf16(x * scale); x is scaled in place.
void round_into(float* x, bf16* y, int n, float scale = 1.f) {
  if (scale != 1.f)
    for (int i = 0; i < n; ++i) x[i] *= scale;
  round_to_bf16(x, y, static_cast<size_t>(n));
}

// rows x cols of x (row stride ld) copied to y, compact. oneDNN's bf16 matmul
// runs a 64 x 256 x 64 product in 6 us on compact operands and in 17 us when
// they are strided rows of the packed QKV activations.
void pack_rows(const bf16* x, int ld, int rows, int cols, bf16* y) {
  for (int r = 0; r < rows; ++r)
    std::memcpy(y + static_cast<size_t>(r) * cols, x + static_cast<size_t>(r) * ld, sizeof(bf16) * cols);
}

// Every (batch row, kv head)'s keys or values, compact: (B, G, tk, hd).
std::vector<bf16> pack_kv(const AttnShape& s, const bf16* x, int ld) {
  const int hd = s.head_dim;
  std::vector<bf16> out(static_cast<size_t>(s.batch) * s.n_kv_heads * s.tk * hd);
  const int blocks = s.batch * s.n_kv_heads;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < blocks; ++i) {
    const int b = i / s.n_kv_heads, g = i % s.n_kv_heads;
    pack_rows(x + static_cast<size_t>(b) * s.tk * ld + g * hd, ld, s.tk, hd,
              out.data() + static_cast<size_t>(i) * s.tk * hd);
  }
  return out;
}

}  // namespace

bool attention_bf16_gemms_apply(const AttnShape& s, Bf16GemmPath path) {
  return path == Bf16GemmPath::kOneDnn && (s.head_dim == 64 || s.head_dim == 128) && s.tq >= kMinRows;
}

// Every product runs with alpha = 1: oneDNN 2.6 applies any other output
// scale to strided operands in a scalar loop (104 us against 17 for a
// 64 x 256 x 64 block). The softmax scale multiplies S in the softmax pass,
// and dQ and dK as they are rounded: the same one fp32 multiplication that
// alpha would make, for S and dQ; dK is scaled once after its fp32 sum over
// the blocks instead of once per block (exactly the same for a power-of-two
// scale, head dim 64).
//
// The query heads that share a kv head are stacked: one product serves the
// group's rows of a query block (3 x 64 rows on the 110M shape, not 64), so
// a third as many oneDNN calls each run 3x the work (a call costs ~3 us of
// setup: 16,000 calls were a third of attention's time).
namespace {

// The stacked query rows of block blk for the group of kv head g: row
// j * blk.rows + r is query blk.t0 + r of head g * group + j.
struct Stack {
  int group, rows;
  int head(int g, int R) const { return g * group + R / rows; }
  int query(int R) const { return R % rows; }
};

// x's rows of the group's heads for this block, compact (group * rows, hd).
void pack_group(const AttnShape& s, const bf16* x, int ld, size_t row0, int g, const Stack& st, bf16* y) {
  const int hd = s.head_dim;
  for (int j = 0; j < st.group; ++j)
    pack_rows(x + row0 * ld + (g * st.group + j) * hd, ld, st.rows, hd, y + static_cast<size_t>(j) * st.rows * hd);
}

}  // namespace

void attention_fwd_bf16_gemms(Bf16GemmPath path, GemmImpl impl, const AttnShape& s, const bf16* q, const bf16* k,
                              const bf16* v, bf16* out, float* lse) {
  const int group = s.n_heads / s.n_kv_heads, hd = s.head_dim;
  const int n_qblocks = (s.tq + kQueryBlock - 1) / kQueryBlock;
  const int tasks = s.batch * s.n_kv_heads * n_qblocks;
  const float scale = s.scale;
  const std::vector<bf16> kp = pack_kv(s, k, s.ldk), vp = pack_kv(s, v, s.ldv);
#pragma omp parallel
  {
    const size_t max_rows = static_cast<size_t>(group) * kQueryBlock;
    std::vector<float> scores(max_rows * s.tk);  // S, then exp(S - max): (rows, kend)
    std::vector<bf16> p(scores.size());           // P unnormalised, rounded
    std::vector<bf16> qb16(max_rows * hd);        // the block's queries, compact
    std::vector<float> o(max_rows * hd);          // P V in fp32: (rows, hd)
    std::vector<float> inv_sum(max_rows);
#pragma omp for schedule(dynamic)
    for (int task = 0; task < tasks; ++task) {
      const int qb = task % n_qblocks, g = (task / n_qblocks) % s.n_kv_heads, b = task / (n_qblocks * s.n_kv_heads);
      const QueryBlock blk(s, qb);
      const Stack st{group, blk.rows};
      const int M = group * blk.rows;
      const size_t qrow0 = static_cast<size_t>(b) * s.tq + blk.t0;
      const size_t kv0 = (static_cast<size_t>(b) * s.n_kv_heads + g) * s.tk * hd;
      pack_group(s, q, s.ldq, qrow0, g, st, qb16.data());
      float* S = scores.data();
      gemm_bf16(path, impl, false, true, M, blk.kend, hd, 1.f, qb16.data(), hd, kp.data() + kv0, hd, 0.f, S,
                blk.kend);
      for (int R = 0; R < M; ++R) {
        const int r = st.query(R), h = st.head(g, R);
        int lo, hi;
        key_range(s, b, blk.t0 + r, &lo, &hi);
        float* row = S + static_cast<size_t>(R) * blk.kend;
#pragma omp simd
        for (int j = 0; j < blk.kend; ++j) row[j] *= scale;
        double se;
        const float mx = softmax_row_exp(row, blk.kend, lo, hi, &se);
        inv_sum[R] = static_cast<float>(1.0 / se);  // O is divided by the fp32 row sum after P V
        round_into(row, p.data() + static_cast<size_t>(R) * blk.kend, blk.kend);
        lse[(static_cast<size_t>(b) * s.n_heads + h) * s.tq + blk.t0 + r] = mx + static_cast<float>(std::log(se));
      }
      gemm_bf16(path, impl, false, false, M, hd, blk.kend, 1.f, p.data(), blk.kend, vp.data() + kv0, hd, 0.f,
                o.data(), hd);
      for (int R = 0; R < M; ++R)
        round_into(o.data() + static_cast<size_t>(R) * hd, out + (qrow0 + st.query(R)) * s.ldo + st.head(g, R) * hd,
                   hd, inv_sum[R]);
    }
  }
}

void attention_bwd_bf16_gemms(Bf16GemmPath path, GemmImpl impl, const AttnShape& s, const bf16* q, const bf16* k,
                              const bf16* v, const bf16* out, const float* lse, const bf16* dout, bf16* dq,
                              bf16* dk, bf16* dv) {
  const int group = s.n_heads / s.n_kv_heads, hd = s.head_dim;
  const int n_qblocks = (s.tq + kQueryBlock - 1) / kQueryBlock;
  const int tasks = s.batch * s.n_kv_heads;  // each task owns dk/dv of one (b, kv head)
  const float scale = s.scale;
  const std::vector<bf16> kp = pack_kv(s, k, s.ldk), vp = pack_kv(s, v, s.ldv);
#pragma omp parallel
  {
    const size_t max_rows = static_cast<size_t>(group) * kQueryBlock;
    const size_t block = max_rows * s.tk, qblock = max_rows * hd;
    std::vector<float> P(block), dP(block);                   // (rows, kend) each
    std::vector<bf16> p16(block), ds16(block);                // P and dS rounded
    std::vector<bf16> q16(qblock), do16(qblock);              // the block's Q and dO, compact
    std::vector<float> dqf(qblock);                           // (rows, hd)
    std::vector<float> dkf(static_cast<size_t>(s.tk) * hd), dvf(dkf.size());  // (tk, hd), fp32 sums
#pragma omp for schedule(dynamic)
    for (int task = 0; task < tasks; ++task) {
      const int g = task % s.n_kv_heads, b = task / s.n_kv_heads;
      const bf16* kg = kp.data() + static_cast<size_t>(task) * s.tk * hd;
      const bf16* vg = vp.data() + static_cast<size_t>(task) * s.tk * hd;
      std::fill(dkf.begin(), dkf.end(), 0.f);
      std::fill(dvf.begin(), dvf.end(), 0.f);
      for (int qb = 0; qb < n_qblocks; ++qb) {
        const QueryBlock blk(s, qb);
        const Stack st{group, blk.rows};
        const int M = group * blk.rows, kend = blk.kend;
        const size_t qrow0 = static_cast<size_t>(b) * s.tq + blk.t0;
        pack_group(s, q, s.ldq, qrow0, g, st, q16.data());
        pack_group(s, dout, s.ldo, qrow0, g, st, do16.data());
        // P = softmax(scale Q K^T) recomputed from lse; dP = dO V^T
        gemm_bf16(path, impl, false, true, M, kend, hd, 1.f, q16.data(), hd, kg, hd, 0.f, P.data(), kend);
        gemm_bf16(path, impl, false, true, M, kend, hd, 1.f, do16.data(), hd, vg, hd, 0.f, dP.data(), kend);
        for (int R = 0; R < M; ++R) {
          const int r = st.query(R), h = st.head(g, R);
          int lo, hi;
          key_range(s, b, blk.t0 + r, &lo, &hi);
          const bf16* o_r = out + (qrow0 + r) * s.ldo + h * hd;
          const bf16* do_r = do16.data() + static_cast<size_t>(R) * hd;
          float D = 0.f;  // rowsum(dO * O)
          for (int i = 0; i < hd; ++i) D += static_cast<float>(do_r[i]) * static_cast<float>(o_r[i]);
          float* p = P.data() + static_cast<size_t>(R) * kend;
          float* ds = dP.data() + static_cast<size_t>(R) * kend;
          attention_row_grad(p, ds, kend, lo, hi, scale, lse[(static_cast<size_t>(b) * s.n_heads + h) * s.tq + blk.t0 + r], D);
          round_into(p, p16.data() + static_cast<size_t>(R) * kend, kend);
          round_into(ds, ds16.data() + static_cast<size_t>(R) * kend, kend);
        }
        // dQ = scale dS K (this block's rows, once); dK += dS^T Q (scaled at the end); dV += P^T dO
        gemm_bf16(path, impl, false, false, M, hd, kend, 1.f, ds16.data(), kend, kg, hd, 0.f, dqf.data(), hd);
        for (int R = 0; R < M; ++R)
          round_into(dqf.data() + static_cast<size_t>(R) * hd, dq + (qrow0 + st.query(R)) * s.ldq + st.head(g, R) * hd,
                     hd, scale);
        gemm_bf16(path, impl, true, false, kend, hd, M, 1.f, ds16.data(), kend, q16.data(), hd, 1.f, dkf.data(), hd);
        gemm_bf16(path, impl, true, false, kend, hd, M, 1.f, p16.data(), kend, do16.data(), hd, 1.f, dvf.data(), hd);
      }
      for (int t = 0; t < s.tk; ++t) {
        const size_t row = static_cast<size_t>(b) * s.tk + t;
        round_into(dkf.data() + static_cast<size_t>(t) * hd, dk + row * s.ldk + g * hd, hd, scale);
        round_into(dvf.data() + static_cast<size_t>(t) * hd, dv + row * s.ldv + g * hd, hd);
      }
    }
  }
}

}  // namespace llamaft::cpu
