// The CPU backend's bf16 storage (train.param_dtype = bf16), op by op,
// against the fp32 ops on the same bf16-rounded inputs, within bounds
// derived from where bf16 rounds:
//  - unit roundoff u = 2^-24 in fp32 and 2^-8 in bf16 (8 significant bits,
//    round to nearest even: half an ulp);
//  - a product of two bf16 values is exact in fp32, so a bf16 GEMM differs
//    from the exact sum only by the fp32 accumulation, |err| <= (K + 3) u
//    sum|a b| in any order (Higham, Accuracy and Stability, 3.1), plus one
//    bf16 rounding of the result when C is bf16;
//  - an elementwise or row op widens exactly, computes what the fp32 op
//    computes and rounds once: within 2^-8 of the fp32 op's result;
//  - attention also rounds P and dS before their products (head_dim 64 and
//    128, as the GPU's tensor-core kernels do): each such product moves by at
//    most 2^-8 times the sum of the magnitudes of its terms.
// A rounding to the wrong side, a truncation (up to 2^-7) or an op left in
// fp32 fails these bounds or the "really bf16" checks.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cpu/gemm_bf16.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "data/token_dataset.hpp"
#include "model/device_batch.hpp"
#include "model/llama.hpp"
#include "quant/quant.hpp"

#include "../common/quant_units.hpp"

namespace llamaft {
namespace {

constexpr double kU32 = 1.0 / (1 << 24);  // fp32 unit roundoff
constexpr double kU16 = 1.0 / (1 << 8);   // bf16 unit roundoff

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = bf16_to_f32(f32_to_bf16(d(g)));  // exactly representable in bf16
  return v;
}
std::vector<bf16> to_bf16(const std::vector<float>& v) {
  std::vector<bf16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16(v[i]);
  return out;
}
std::vector<float> widen(const std::vector<bf16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i]);
  return out;
}

// |got - want| <= bound[i] for every i; returns how many elements differ at all.
size_t expect_within(const std::vector<float>& got, const std::vector<float>& want, const std::vector<double>& bound,
                     const char* what) {
  EXPECT_EQ(got.size(), want.size()) << what;
  size_t differ = 0, bad = 0, first_bad = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    EXPECT_TRUE(std::isfinite(got[i])) << what << " at " << i;
    const double d = std::abs(double(got[i]) - want[i]);
    differ += d > 0;
    if (d > bound[i] && bad++ == 0) first_bad = i;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " elements outside the bound, first at " << first_bad << ": got "
                     << got[first_bad] << " want " << want[first_bad] << " bound " << bound[first_bad];
  return differ;
}
// The bound of one bf16 rounding of an fp32 result (plus denormal slack).
std::vector<double> one_rounding(const std::vector<float>& want) {
  std::vector<double> b(want.size());
  for (size_t i = 0; i < want.size(); ++i) b[i] = kU16 * std::abs(want[i]) + 1e-38;
  return b;
}

class CpuBf16 : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend();
};

TEST_F(CpuBf16, BackendHasBf16Storage) {
  EXPECT_TRUE(be->has_bf16_storage());
  EXPECT_FALSE(be->bf16_gemm_name().empty());
}

// ---- GEMM -------------------------------------------------------------------------
struct GemmCase {
  bool ta, tb;
  int m, n, k, pad;  // pad: extra leading-dimension columns
  float alpha, beta;
};

// Reference in double on the (exact) bf16 values, and the bound of each element.
void gemm_reference(const GemmCase& g, const std::vector<float>& a, const std::vector<float>& b,
                    const std::vector<float>& c, int lda, int ldb, int ldc, bool bf16_out, std::vector<float>* want,
                    std::vector<double>* bound) {
  want->assign(size_t(g.m) * ldc, 0.f);
  bound->assign(want->size(), 0.0);
  for (int i = 0; i < g.m; ++i)
    for (int j = 0; j < g.n; ++j) {
      double s = 0, mag = 0;
      for (int p = 0; p < g.k; ++p) {
        const double x = g.ta ? a[size_t(p) * lda + i] : a[size_t(i) * lda + p];
        const double y = g.tb ? b[size_t(j) * ldb + p] : b[size_t(p) * ldb + j];
        s += x * y;
        mag += std::abs(x * y);
      }
      const double cij = c[size_t(i) * ldc + j];
      const double r = g.alpha * s + g.beta * cij;
      const double fp32_err = (g.k + 3) * kU32 * (std::abs(g.alpha) * mag + std::abs(g.beta * cij)) * 1.01;
      (*want)[size_t(i) * ldc + j] = float(r);
      (*bound)[size_t(i) * ldc + j] = fp32_err + (bf16_out ? kU16 * (std::abs(r) + fp32_err) : 0.0) + 1e-38;
    }
}

void check_gemm_path(cpu::Bf16GemmPath path, const GemmCase& g) {
  const int ar = g.ta ? g.k : g.m, ac = g.ta ? g.m : g.k, br = g.tb ? g.n : g.k, bc = g.tb ? g.k : g.n;
  const int lda = ac + g.pad, ldb = bc + g.pad, ldc = g.n + g.pad;
  const auto a = randn(size_t(ar) * lda, 1), b = randn(size_t(br) * ldb, 2), c = randn(size_t(g.m) * ldc, 3);
  const auto a16 = to_bf16(a), b16 = to_bf16(b);
  for (const bool bf16_out : {false, true}) {
    std::vector<float> want;
    std::vector<double> bound;
    gemm_reference(g, a, b, c, lda, ldb, ldc, bf16_out, &want, &bound);
    std::vector<float> got;
    if (bf16_out) {
      auto c16 = to_bf16(c);
      cpu::gemm_bf16(path, cpu::default_gemm_impl(), g.ta, g.tb, g.m, g.n, g.k, g.alpha, a16.data(), lda,
                     b16.data(), ldb, g.beta, c16.data(), ldc);
      got = widen(c16);
    } else {
      got = c;
      cpu::gemm_bf16(path, cpu::default_gemm_impl(), g.ta, g.tb, g.m, g.n, g.k, g.alpha, a16.data(), lda,
                     b16.data(), ldb, g.beta, got.data(), ldc);
    }
    // Only the m x n block is written; the padding columns keep C's old values.
    for (int i = 0; i < g.m; ++i)
      for (int j = g.n; j < ldc; ++j) {
        const size_t o = size_t(i) * ldc + j;
        want[o] = bf16_out ? bf16_to_f32(f32_to_bf16(c[o])) : c[o];
        bound[o] = 0;
      }
    const std::string what = std::string(cpu::bf16_gemm_path_name(path)) + (bf16_out ? " bf16 C" : " fp32 C") +
                             " ta" + std::to_string(g.ta) + " tb" + std::to_string(g.tb);
    expect_within(got, want, bound, what.c_str());
  }
}

const GemmCase kGemmCases[] = {
    {false, false, 37, 29, 41, 0, 1.f, 0.f}, {false, true, 37, 29, 41, 3, 0.5f, 1.f},
    {true, false, 19, 33, 300, 1, 1.f, 2.f}, {true, true, 64, 48, 96, 0, -1.5f, 0.25f},
    {false, true, 5, 1000, 288, 0, 1.f, 0.f},  // a logits-shaped product
    // Scaled products into rows apart (computed compact at alpha 1, then scaled
    // and summed): LoRA's y += s t B^T into the fused gate-up output, and beta 0.
    {false, true, 70, 200, 16, 56, 2.f, 1.f}, {false, false, 40, 24, 33, 8, -0.75f, 0.f},
    {true, false, 90, 16, 64, 40, 2.f, 1.f},  // LoRA's dB += s dy^T t, dy inside the fused gradient
};

TEST_F(CpuBf16, GemmWidenedPathWithinTheAccumulationBound) {
  for (const GemmCase& g : kGemmCases) check_gemm_path(cpu::Bf16GemmPath::kWidened, g);
}

TEST_F(CpuBf16, GemmOneDnnPathWithinTheAccumulationBound) {
  if (!cpu::cpu_has_avx512_bf16()) GTEST_SKIP() << "this CPU has no AVX512-BF16: oneDNN's bf16 kernels cannot run";
  for (const GemmCase& g : kGemmCases) check_gemm_path(cpu::Bf16GemmPath::kOneDnn, g);
}

// The oneDNN primitive setup (strides for transposes and padding, alpha as
// the output scale, beta as the sum post-op) in fp32, which runs on every CPU.
TEST_F(CpuBf16, OneDnnMatmulSetupMatchesTheReference) {
  for (const GemmCase& g : kGemmCases) {
    const int ar = g.ta ? g.k : g.m, ac = g.ta ? g.m : g.k, br = g.tb ? g.n : g.k, bc = g.tb ? g.k : g.n;
    const int lda = ac + g.pad, ldb = bc + g.pad, ldc = g.n + g.pad;
    const auto a = randn(size_t(ar) * lda, 4), b = randn(size_t(br) * ldb, 5), c = randn(size_t(g.m) * ldc, 6);
    std::vector<float> want;
    std::vector<double> bound;
    gemm_reference(g, a, b, c, lda, ldb, ldc, false, &want, &bound);
    for (int i = 0; i < g.m; ++i)
      for (int j = g.n; j < ldc; ++j) want[size_t(i) * ldc + j] = c[size_t(i) * ldc + j];
    std::vector<float> got = c;
    cpu::onednn_sgemm(g.ta, g.tb, g.m, g.n, g.k, g.alpha, a.data(), lda, b.data(), ldb, g.beta, got.data(), ldc);
    expect_within(got, want, bound, "oneDNN fp32 matmul");
  }
}

// A quantized unit dequantized straight to bf16 is the fp32 dequantization
// rounded once, bit for bit (a bf16 unit's words copied as they are), for
// every kind, over 3 shard regions with a partial block and fp32 norms.
TEST_F(CpuBf16, DequantizeToBf16IsTheFp32ResultRounded) {
  const Unit unit = test::make_unit({{"input_layernorm.weight", {40}},
                                     {"self_attn.q_proj.weight", {300, 70}},
                                     {"post_attention_layernorm.weight", {40}},
                                     {"mlp.down_proj.weight", {33, 64}}});
  const std::vector<float> src = randn(size_t(unit.numel), 91, 0.05f);
  for (quant::Kind kind : {quant::Kind::kNf4, quant::Kind::kNf4Plain, quant::Kind::kInt8, quant::Kind::kBf16}) {
    SCOPED_TRACE(quant::kind_name(kind));
    const int shards = 3;
    const quant::UnitCodec codec(unit, kind, shards);
    const std::vector<float> regions = test::quantized_regions(unit, codec, shards, src);
    std::vector<float> wide(size_t(unit.numel), 7.f);
    std::vector<bf16> narrow(size_t(unit.numel), bf16(7.f));
    be->dequantize_unit(codec, regions.data(), wide.data());
    be->dequantize_unit(codec, regions.data(), narrow.data());
    size_t moved = 0;
    for (size_t i = 0; i < wide.size(); ++i) {
      ASSERT_EQ(narrow[i].bits, bf16(wide[i]).bits) << i;
      moved += wide[i] != 7.f;
    }
    EXPECT_GT(moved, wide.size() * 9 / 10) << "the dequantization wrote almost nothing";
  }
}

// ---- elementwise and row ops -------------------------------------------------------
TEST_F(CpuBf16, RowOpsRoundOnceWhatTheFp32OpsCompute) {
  const int rows = 7, dim = 96, ld = 2 * dim;
  const auto x = randn(rows * dim, 10), w = randn(dim, 11, 0.5f), dy = randn(rows * dim, 12);
  const auto x16 = to_bf16(x), w16 = to_bf16(w), dy16 = to_bf16(dy);

  // RMSNorm: y and dx bf16, rstd and dw fp32 (accumulated into a nonzero dw).
  std::vector<float> y(x.size()), rstd(rows), dx(x.size()), dw(dim, 0.25f);
  be->rmsnorm_fwd(x.data(), w.data(), y.data(), rstd.data(), rows, dim, 1e-5f);
  be->rmsnorm_bwd(dy.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), rows, dim);
  std::vector<bf16> y16(x.size()), dx16(x.size());
  std::vector<float> rstd16(rows), dw16(dim, 0.25f);
  be->rmsnorm_fwd(x16.data(), w16.data(), y16.data(), rstd16.data(), rows, dim, 1e-5f);
  be->rmsnorm_bwd(dy16.data(), x16.data(), w16.data(), rstd16.data(), dx16.data(), dw16.data(), rows, dim);
  EXPECT_GT(expect_within(widen(y16), y, one_rounding(y), "rmsnorm y"), 0u) << "y was not rounded to bf16";
  expect_within(rstd16, rstd, std::vector<double>(rows, 0.0), "rmsnorm rstd (fp32, the same arithmetic)");
  expect_within(widen(dx16), dx, one_rounding(dx), "rmsnorm dx");
  expect_within(dw16, dw, std::vector<double>(dim, 0.0), "rmsnorm dw (fp32, the same arithmetic)");

  // RoPE forward and inverse, in place on rows of stride ld.
  std::vector<int32_t> pos(rows);
  for (int r = 0; r < rows; ++r) pos[r] = 3 * r + 1;
  std::vector<float> inv_freq(16);
  for (int i = 0; i < 16; ++i) inv_freq[i] = std::pow(10000.f, -float(i) / 16);
  auto xr = randn(rows * ld, 13);
  auto xr16 = to_bf16(xr);
  for (const bool inverse : {false, true}) {
    std::vector<float> want = xr;
    be->rope(want.data(), ld, pos.data(), inv_freq.data(), rows, 3, 32, inverse);
    std::vector<bf16> got16 = xr16;
    be->rope(got16.data(), ld, pos.data(), inv_freq.data(), rows, 3, 32, inverse);
    expect_within(widen(got16), want, one_rounding(want), inverse ? "rope inverse" : "rope");
  }

  // SwiGLU forward and backward, gate|up packed with stride ld.
  const auto gu = randn(rows * ld, 14), dout = randn(rows * dim, 15);
  const auto gu16 = to_bf16(gu), dout16 = to_bf16(dout);
  std::vector<float> act(rows * dim), dgu(rows * ld);
  be->swiglu_fwd(gu.data(), gu.data() + dim, ld, act.data(), rows, dim);
  be->swiglu_bwd(dout.data(), gu.data(), gu.data() + dim, ld, dgu.data(), dgu.data() + dim, ld, rows, dim);
  std::vector<bf16> act16(rows * dim), dgu16(rows * ld);
  be->swiglu_fwd(gu16.data(), gu16.data() + dim, ld, act16.data(), rows, dim);
  be->swiglu_bwd(dout16.data(), gu16.data(), gu16.data() + dim, ld, dgu16.data(), dgu16.data() + dim, ld, rows, dim);
  expect_within(widen(act16), act, one_rounding(act), "swiglu out");
  expect_within(widen(dgu16), dgu, one_rounding(dgu), "swiglu dgate|dup");

  // axpy (y += alpha x), dropout, fill.
  std::vector<float> ya = dy;
  be->axpy(0.75f, x.data(), ya.data(), x.size());
  std::vector<bf16> ya16 = dy16;
  be->axpy(0.75f, x16.data(), ya16.data(), x.size());
  expect_within(widen(ya16), ya, one_rounding(ya), "axpy");
  const std::vector<uint64_t> keys = {11, 12};
  std::vector<float> dr(x.size());
  be->dropout(x.data(), dr.data(), rows, dim, 4, keys.data(), 7, 0.3f);
  std::vector<bf16> dr16(x.size());
  be->dropout(x16.data(), dr16.data(), rows, dim, 4, keys.data(), 7, 0.3f);
  expect_within(widen(dr16), dr, one_rounding(dr), "dropout");
  std::vector<bf16> f16(5);
  be->fill(f16.data(), 0.1f, f16.size());
  for (const bf16& v : f16) EXPECT_EQ(v.bits, f32_to_bf16(0.1f));

  // Embedding: a row copy forward, an fp32 table gradient backward.
  const int vocab = 11;
  const auto table = randn(vocab * dim, 16);
  const auto table16 = to_bf16(table);
  const std::vector<int32_t> ids = {3, 0, 3, 10, 7, 3, 1};
  std::vector<bf16> emb16(rows * dim);
  be->embedding_fwd(ids.data(), table16.data(), emb16.data(), rows, dim);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < dim; ++c) ASSERT_EQ(emb16[r * dim + c].bits, table16[ids[r] * dim + c].bits);
  std::vector<float> dt(vocab * dim, 0.f), dt16(vocab * dim, 0.f);
  be->embedding_bwd(ids.data(), dy.data(), dt.data(), rows, dim);
  be->embedding_bwd(ids.data(), dy16.data(), dt16.data(), rows, dim);
  expect_within(dt16, dt, std::vector<double>(dt.size(), 0.0), "embedding dtable (fp32 sums of exact values)");
}

TEST_F(CpuBf16, CrossEntropyLossInFp32GradientRounded) {
  const int rows = 5, vocab = 777;
  const auto logits = randn(rows * vocab, 20, 2.f);
  const std::vector<int32_t> labels = {3, -100, 776, 0, 400};
  std::vector<float> g = logits, loss(rows);
  be->cross_entropy_rows(g.data(), labels.data(), loss.data(), rows, vocab, 0.125f);
  std::vector<bf16> g16 = to_bf16(logits);
  std::vector<float> loss16(rows);
  be->cross_entropy_rows(g16.data(), labels.data(), loss16.data(), rows, vocab, 0.125f);
  expect_within(loss16, loss, std::vector<double>(rows, 0.0), "cross-entropy loss (fp32 from exact bf16 logits)");
  expect_within(widen(g16), g, one_rounding(g), "cross-entropy gradient");
}

// ---- attention ---------------------------------------------------------------------
// Double-precision attention on the bf16 inputs, and each output's bound:
//  - one bf16 rounding of the output itself: 2^-8 |x|;
//  - P (forward, and dV) and dS (dQ, dK) rounded to bf16 before their
//    products, when the head dim is 64 or 128: 2^-8 times the sum of the
//    magnitudes of the product's terms;
//  - the backward's D = rowsum(dO * O) reads the stored bf16 O, which is off
//    the exact O by the forward's bound; through dS = P (dP - D) that moves
//    dQ by scale |dD| sum_j P_j |K_j| and dK by scale P_j |dD| |Q|;
//  - fp32 accumulation, (terms + 8) u times the same magnitudes.
struct AttnRef {
  std::vector<float> o, dq, dk, dv;
  std::vector<double> bo, bdq, bdk, bdv;
};

AttnRef attention_reference(const AttnShape& s, const std::vector<float>& q, const std::vector<float>& k,
                            const std::vector<float>& v, const std::vector<float>& dout, bool round_p) {
  const int hd = s.head_dim, qd = s.n_heads * hd, kvd = s.n_kv_heads * hd, group = s.n_heads / s.n_kv_heads;
  const size_t nq = size_t(s.batch) * s.tq, nk = size_t(s.batch) * s.tk;
  const double rp = round_p ? kU16 : 0.0, acc = (s.tk + s.tq + hd + 8) * kU32 * 1.01;
  std::vector<double> o(nq * qd, 0), dq(nq * qd, 0), dk(nk * kvd, 0), dv(nk * kvd, 0);
  std::vector<double> bo(nq * qd, 0), bdq(nq * qd, 0), bdk(nk * kvd, 0), bdv(nk * kvd, 0);
  auto Q = [&](size_t r, int h, int i) { return double(q[r * qd + h * hd + i]); };
  auto K = [&](size_t r, int g, int i) { return double(k[r * kvd + g * hd + i]); };
  auto V = [&](size_t r, int g, int i) { return double(v[r * kvd + g * hd + i]); };
  auto DO = [&](size_t r, int h, int i) { return double(dout[r * qd + h * hd + i]); };
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.n_heads; ++h) {
      const int g = h / group;
      for (int t = 0; t < s.tq; ++t) {
        const size_t qr = size_t(b) * s.tq + t, k0 = size_t(b) * s.tk;
        const int hi = std::min(s.tk, s.q_offset + t + 1);
        std::vector<double> p(hi), ds(hi);
        double mx = -1e300, z = 0;
        for (int j = 0; j < hi; ++j) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += Q(qr, h, i) * K(k0 + j, g, i);
          mx = std::max(mx, p[j] = d * s.scale);
        }
        for (int j = 0; j < hi; ++j) z += (p[j] = std::exp(p[j] - mx));
        for (int j = 0; j < hi; ++j) p[j] /= z;
        // Forward, and the error bound of the stored O that D reads.
        double D = 0, dD = 0;
        for (int i = 0; i < hd; ++i) {
          double oi = 0, mag = 0;
          for (int j = 0; j < hi; ++j) {
            oi += p[j] * V(k0 + j, g, i);
            mag += p[j] * std::abs(V(k0 + j, g, i));
          }
          const size_t e = qr * qd + h * hd + i;
          o[e] = oi;
          bo[e] = kU16 * std::abs(oi) + (rp + acc) * mag;
          D += DO(qr, h, i) * oi;
          dD += std::abs(DO(qr, h, i)) * 1.01 * (bo[e] + kU16 * (std::abs(oi) + bo[e])) + acc * std::abs(DO(qr, h, i) * oi);
        }
        for (int j = 0; j < hi; ++j) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += DO(qr, h, i) * V(k0 + j, g, i);
          ds[j] = p[j] * (d - D);
        }
        for (int j = 0; j < hi; ++j)
          for (int i = 0; i < hd; ++i) {
            const size_t eq = qr * qd + h * hd + i, ek = (k0 + j) * kvd + g * hd + i;
            dq[eq] += s.scale * ds[j] * K(k0 + j, g, i);
            bdq[eq] += s.scale * ((rp + acc) * std::abs(ds[j] * K(k0 + j, g, i)) + p[j] * dD * std::abs(K(k0 + j, g, i)));
            dk[ek] += s.scale * ds[j] * Q(qr, h, i);
            bdk[ek] += s.scale * ((rp + acc) * std::abs(ds[j] * Q(qr, h, i)) + p[j] * dD * std::abs(Q(qr, h, i)));
            dv[ek] += p[j] * DO(qr, h, i);
            bdv[ek] += (rp + acc) * std::abs(p[j] * DO(qr, h, i));
          }
      }
    }
  AttnRef r;
  auto out = [](const std::vector<double>& val, std::vector<double>& bound, std::vector<float>* x,
                std::vector<double>* b) {
    x->resize(val.size());
    b->resize(val.size());
    for (size_t i = 0; i < val.size(); ++i) {
      (*x)[i] = float(val[i]);
      (*b)[i] = kU16 * (std::abs(val[i]) + bound[i]) + bound[i] + 1e-30;  // plus the output's own rounding
    }
  };
  // bo so far excludes O's own rounding (added here like the others).
  for (size_t i = 0; i < bo.size(); ++i) bo[i] -= kU16 * std::abs(o[i]);
  out(o, bo, &r.o, &r.bo);
  out(dq, bdq, &r.dq, &r.bdq);
  out(dk, bdk, &r.dk, &r.bdk);
  out(dv, bdv, &r.dv, &r.bdv);
  return r;
}

struct Bf16AttnCase {
  int batch, tq, tk, hq, hkv, hd, q_offset;
};

class CpuBf16Attention : public CpuBf16, public ::testing::WithParamInterface<Bf16AttnCase> {};

TEST_P(CpuBf16Attention, WithinTheBoundOfItsRoundings) {
  const Bf16AttnCase c = GetParam();
  const int qd = c.hq * c.hd, kvd = c.hkv * c.hd, pad = 5;
  AttnShape s;
  s.batch = c.batch;
  s.tq = c.tq;
  s.tk = c.tk;
  s.n_heads = c.hq;
  s.n_kv_heads = c.hkv;
  s.head_dim = c.hd;
  s.q_offset = c.q_offset;
  s.ldq = s.ldo = qd + pad;  // strided, as the model's packed qkv rows are
  s.ldk = s.ldv = kvd + pad;
  s.scale = 1.f / std::sqrt(float(c.hd));
  const size_t nq = size_t(c.batch) * c.tq, nk = size_t(c.batch) * c.tk;
  auto pack = [](const std::vector<float>& x, size_t rows, int cols, int ld) {
    std::vector<bf16> out(rows * ld, bf16(0.f));
    for (size_t r = 0; r < rows; ++r)
      for (int i = 0; i < cols; ++i) out[r * ld + i] = bf16(x[r * cols + i]);
    return out;
  };
  auto unpack = [](const std::vector<bf16>& x, size_t rows, int cols, int ld) {
    std::vector<float> out(rows * cols);
    for (size_t r = 0; r < rows; ++r)
      for (int i = 0; i < cols; ++i) out[r * cols + i] = static_cast<float>(x[r * ld + i]);
    return out;
  };
  const auto q = randn(nq * qd, 31), k = randn(nk * kvd, 32), v = randn(nk * kvd, 33), dout = randn(nq * qd, 34);
  const auto q16 = pack(q, nq, qd, s.ldq), k16 = pack(k, nk, kvd, s.ldk), v16 = pack(v, nk, kvd, s.ldv),
             do16 = pack(dout, nq, qd, s.ldo);
  std::vector<bf16> o16(nq * s.ldo), dq16(nq * s.ldq), dk16(nk * s.ldk), dv16(nk * s.ldv);
  std::vector<float> lse(size_t(c.batch) * c.hq * c.tq);
  be->attention_fwd(s, q16.data(), k16.data(), v16.data(), o16.data(), lse.data());
  be->attention_bwd(s, q16.data(), k16.data(), v16.data(), o16.data(), lse.data(), do16.data(), dq16.data(),
                    dk16.data(), dv16.data());
  const bool round_p = c.hd == 64 || c.hd == 128;
  const AttnRef r = attention_reference(s, q, k, v, dout, round_p);
  expect_within(unpack(o16, nq, qd, s.ldo), r.o, r.bo, "attention out");
  expect_within(unpack(dq16, nq, qd, s.ldq), r.dq, r.bdq, "attention dq");
  expect_within(unpack(dk16, nk, kvd, s.ldk), r.dk, r.bdk, "attention dk");
  expect_within(unpack(dv16, nk, kvd, s.ldv), r.dv, r.bdv, "attention dv");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuBf16Attention,
                         ::testing::Values(Bf16AttnCase{2, 70, 70, 4, 2, 64, 0},   // tensor-core head dim, GQA
                                           Bf16AttnCase{2, 130, 130, 6, 2, 64, 0}, // 3 heads stacked per kv head, 3 blocks
                                           Bf16AttnCase{1, 33, 33, 2, 1, 128, 0},  // head dim 128, MQA
                                           Bf16AttnCase{1, 20, 20, 4, 4, 32, 0},   // SIMT head dim: P stays fp32
                                           Bf16AttnCase{1, 3, 9, 2, 1, 64, 6}),    // KV-cache decode
                         [](const ::testing::TestParamInfo<Bf16AttnCase>& info) {
                           const Bf16AttnCase& c = info.param;
                           return "tq" + std::to_string(c.tq) + "_tk" + std::to_string(c.tk) + "_h" +
                                  std::to_string(c.hq) + "kv" + std::to_string(c.hkv) + "_hd" + std::to_string(c.hd);
                         });

// ---- the whole model -----------------------------------------------------------------
LlamaConfig small_config() {
  LlamaConfig c = preset_config("tiny");
  c.vocab_size = 211;
  c.hidden_size = 128;
  c.intermediate_size = 192;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 64;  // the tensor-core head dim: P and dS rounded
  return c;
}

void init_params(ResidentParams& p, const ParamLayout& layout) {
  for (int u = 0; u < layout.num_units(); ++u) {
    Rng rng(7, u);
    for (const auto& t : layout.units()[u].tensors) {
      float* w = p.mutable_params(u) + t.offset;
      const bool norm = t.shape.size() == 1;
      for (int64_t i = 0; i < t.numel(); ++i) w[i] = norm ? float(1 + 0.1 * rng.normal()) : float(0.1 * rng.normal());
    }
  }
}

struct ModelRun {
  double loss;
  std::vector<float> logits, grads;
};

ModelRun run_model(bool bf16_storage) {
  auto be = make_cpu_backend();
  const LlamaConfig cfg = small_config();
  ModelOptions opts;
  opts.bf16_storage = bf16_storage;
  LlamaModel model(cfg, *be, opts);
  ResidentParams params(*be, model.layout());
  init_params(params, model.layout());
  // fp32 on the same bf16-rounded weights, so only the compute differs.
  for (int u = 0; u < params.num_units(); ++u)
    for (int64_t i = 0; i < params.unit_numel(u); ++i)
      params.mutable_params(u)[i] = bf16_to_f32(f32_to_bf16(params.mutable_params(u)[i]));
  if (bf16_storage) params.round_copies_to_bf16();
  std::vector<TokenRow> rows(3);
  Rng rng(5);
  for (auto& r : rows) {
    for (int t = 0; t < 40; ++t) r.input_ids.push_back(int32_t(rng.next_u64() % cfg.vocab_size));
    r.labels = r.input_ids;
  }
  const HostBatch hb = make_batch({&rows[0], &rows[1], &rows[2]}, 40);
  DeviceBatch dev(*be);
  const Batch b = dev.upload(hb);
  ModelRun out;
  out.logits.resize(size_t(3) * 40 * cfg.vocab_size);
  model.forward_logits(b, params, out.logits.data());
  const LossSum l = model.forward_backward(b, params, 1.f / float(hb.target_tokens));
  out.loss = l.loss_sum / double(l.tokens);
  for (int u = 0; u < params.num_units(); ++u)
    out.grads.insert(out.grads.end(), params.grad_data(u), params.grad_data(u) + params.unit_numel(u));
  return out;
}

// bf16 compute against fp32 compute on the same bf16 weights. Each rounding
// point moves what it stores by at most 2^-8 relative; the forward has R = 9
// of them per layer plus 2 in the head (the norm's output and the logits),
// so to first order the logits move by at most R 2^-8 of their scale (the
// residual stream's rounding does not grow through a pre-norm block of
// norm-1 weights at this scale), and the mean NLL, whose gradient in the
// logits has norm <= 2 per token, by 2 R 2^-8 max|logit|. The bf16 path must
// also really differ from fp32: its logits are not the fp32 ones.
TEST(CpuBf16Model, Bf16ComputeWithinItsRoundingOfFp32AndReallyBf16) {
  const ModelRun f = run_model(false), h = run_model(true);
  const LlamaConfig cfg = small_config();
  const double R = 9.0 * cfg.num_hidden_layers + 2;
  double max_logit = 0, worst = 0;
  size_t differ = 0;
  for (size_t i = 0; i < f.logits.size(); ++i) {
    max_logit = std::max(max_logit, double(std::abs(f.logits[i])));
    const double d = std::abs(double(h.logits[i]) - f.logits[i]);
    worst = std::max(worst, d);
    differ += d > 0;
  }
  EXPECT_LE(worst, R * kU16 * max_logit) << "logits: max |bf16 - fp32| against R 2^-8 max|logit|";
  EXPECT_GT(differ, f.logits.size() / 2) << "the bf16 path's logits are the fp32 ones: bf16 did not run";
  EXPECT_LE(std::abs(h.loss - f.loss), 2 * R * kU16 * max_logit) << "loss " << h.loss << " vs " << f.loss;
  EXPECT_NE(h.loss, f.loss);
  // Gradients: the same direction (cosine) to within the same relative size.
  double dot = 0, nf = 0, nh = 0;
  ASSERT_EQ(f.grads.size(), h.grads.size());
  for (size_t i = 0; i < f.grads.size(); ++i) {
    dot += double(f.grads[i]) * h.grads[i];
    nf += double(f.grads[i]) * f.grads[i];
    nh += double(h.grads[i]) * h.grads[i];
  }
  const double rel = std::sqrt(std::max(0.0, nf + nh - 2 * dot) / nf);
  EXPECT_LE(rel, 2 * R * kU16) << "gradient: ||g_bf16 - g_fp32|| / ||g_fp32||";
  EXPECT_GT(rel, 0.0);
  std::printf("bf16 vs fp32: max|dlogit| %.3g (max|logit| %.3g), loss %.6f vs %.6f, grad rel diff %.3g\n", worst,
              max_logit, h.loss, f.loss, rel);
}

// eval and generate: resident parameters in bf16.
TEST(CpuBf16Model, ResidentParamsRefuseBf16UntilRounded) {
  auto be = make_cpu_backend();
  LlamaModel model(small_config(), *be);
  ResidentParams params(*be, model.layout());
  EXPECT_THROW(params.params_bf16(0), Error);
  init_params(params, model.layout());
  params.round_copies_to_bf16();
  const bf16* h = params.params_bf16(0);
  for (int64_t i = 0; i < params.unit_numel(0); ++i) ASSERT_EQ(h[i].bits, f32_to_bf16(params.params(0)[i]));
}

}  // namespace
}  // namespace llamaft
