// Every CPU backend op: forward against a plain double-precision reference
// written here, backward against central finite differences of that
// reference (a scalar probe loss L = sum(out * probe)).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "backend/backend.hpp"
#include "backend/row_math.hpp"

namespace llamaft {
namespace {

using Vec = std::vector<double>;

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}
Vec to_d(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// Max |a - b| / (atol + rtol |b|) <= 1, plus finiteness and non-zero guards.
void expect_close(const std::vector<float>& got, const Vec& want, double atol, double rtol,
                  const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0, norm = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << what << " non-finite at " << i;
    const double r = std::abs(got[i] - want[i]) / (atol + rtol * std::abs(want[i]));
    if (r > worst) worst = r, worst_i = i;
    norm += std::abs(want[i]);
  }
  EXPECT_GT(norm, 0.0) << what << ": reference is all zeros, the test would prove nothing";
  EXPECT_LE(worst, 1.0) << what << ": worst at " << worst_i << " got " << got[worst_i] << " want "
                        << want[worst_i];
}

// Central differences of f (double) at x, probed with `probe`.
Vec finite_diff(const std::function<Vec(const Vec&)>& f, Vec x, const Vec& probe, double h = 1e-5) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const Vec up = f(x);
    x[i] = x0 - h;
    const Vec dn = f(x);
    x[i] = x0;
    double s = 0;
    for (size_t j = 0; j < up.size(); ++j) s += (up[j] - dn[j]) * probe[j];
    g[i] = s / (2 * h);
  }
  return g;
}

class CpuOps : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend();
};

// ---- GEMM ---------------------------------------------------------------------------
TEST_F(CpuOps, GemmAllTransposesMatchNaive) {
  const int m = 37, n = 29, k = 41;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      auto a = randn(m * k, 1), b = randn(k * n, 2), c = randn(m * n, 3);
      const int lda = ta ? m : k, ldb = tb ? k : n;
      Vec want(m * n);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          double s = 0;
          for (int p = 0; p < k; ++p)
            s += double(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
          want[i * n + j] = 0.5 * s + 2.0 * c[i * n + j];
        }
      be->gemm(ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, 2.f, c.data(), n);
      expect_close(c, want, 1e-5, 1e-5, "gemm");
    }
}

// ---- RMSNorm ------------------------------------------------------------------------
Vec rmsnorm_ref(const Vec& x, const Vec& w, int rows, int dim, double eps) {
  Vec y(x.size());
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += x[r * dim + i] * x[r * dim + i];
    const double rstd = 1.0 / std::sqrt(ss / dim + eps);
    for (int i = 0; i < dim; ++i) y[r * dim + i] = x[r * dim + i] * rstd * w[i];
  }
  return y;
}

TEST_F(CpuOps, RmsNormForwardBackward) {
  const int rows = 5, dim = 67;
  const float eps = 1e-5f;
  auto x = randn(rows * dim, 4), w = randn(dim, 5), probe = randn(rows * dim, 6);
  std::vector<float> y(rows * dim), rstd(rows), dx(rows * dim), dw(dim, 0.f);
  be->rmsnorm_fwd(x.data(), w.data(), y.data(), rstd.data(), rows, dim, eps);
  expect_close(y, rmsnorm_ref(to_d(x), to_d(w), rows, dim, eps), 1e-5, 1e-5, "rmsnorm fwd");
  be->rmsnorm_bwd(probe.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), rows, dim);
  const Vec wd = to_d(w), xd = to_d(x);
  expect_close(dx, finite_diff([&](const Vec& v) { return rmsnorm_ref(v, wd, rows, dim, eps); }, xd, to_d(probe)),
               1e-4, 1e-4, "rmsnorm dx");
  expect_close(dw, finite_diff([&](const Vec& v) { return rmsnorm_ref(xd, v, rows, dim, eps); }, wd, to_d(probe)),
               1e-4, 1e-4, "rmsnorm dw");
}

// ---- RoPE (HF rotate_half) ------------------------------------------------------------
Vec rope_ref(const Vec& x, int ld, const std::vector<int32_t>& pos, const std::vector<float>& inv, int rows,
             int heads, int hd) {
  Vec y = x;
  const int half = hd / 2;
  for (int r = 0; r < rows; ++r)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < half; ++i) {
        const double ang = double(pos[r]) * inv[i];
        const double a = x[r * ld + h * hd + i], b = x[r * ld + h * hd + i + half];
        // rotate_half: x * cos + cat(-x2, x1) * sin
        y[r * ld + h * hd + i] = a * std::cos(ang) - b * std::sin(ang);
        y[r * ld + h * hd + i + half] = b * std::cos(ang) + a * std::sin(ang);
      }
  return y;
}

TEST_F(CpuOps, RopeForwardAndInverse) {
  const int rows = 7, heads = 3, hd = 16, ld = heads * hd + 5;  // strided rows
  std::vector<int32_t> pos = {0, 1, 2, 17, 100, 1000, 4095};
  std::vector<float> inv(hd / 2);
  for (int i = 0; i < hd / 2; ++i) inv[i] = 1.f / std::pow(10000.f, 2.f * i / hd);
  auto x = randn(rows * ld, 7);
  auto y = x;
  be->rope(y.data(), ld, pos.data(), inv.data(), rows, heads, hd, false);
  expect_close(y, rope_ref(to_d(x), ld, pos, inv, rows, heads, hd), 1e-4, 1e-4, "rope fwd");
  // Backward of a rotation is the inverse rotation: check against FD.
  auto probe = randn(rows * ld, 8);
  auto g = probe;
  be->rope(g.data(), ld, pos.data(), inv.data(), rows, heads, hd, true);
  expect_close(g, finite_diff([&](const Vec& v) { return rope_ref(v, ld, pos, inv, rows, heads, hd); }, to_d(x),
                              to_d(probe)),
               1e-4, 1e-4, "rope bwd");
}

// ---- SwiGLU -----------------------------------------------------------------------------
TEST_F(CpuOps, SwigluForwardBackward) {
  const int rows = 4, n = 33, ld = 2 * n;
  auto gu = randn(rows * ld, 9, 2.f), probe = randn(rows * n, 10);
  auto ref = [&](const Vec& v) {
    Vec o(rows * n);
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < n; ++i) {
        const double g = v[r * ld + i], u = v[r * ld + n + i];
        o[r * n + i] = g / (1 + std::exp(-g)) * u;
      }
    return o;
  };
  std::vector<float> out(rows * n), dgu(rows * ld);
  be->swiglu_fwd(gu.data(), gu.data() + n, ld, out.data(), rows, n);
  expect_close(out, ref(to_d(gu)), 1e-5, 1e-5, "swiglu fwd");
  be->swiglu_bwd(probe.data(), gu.data(), gu.data() + n, ld, dgu.data(), dgu.data() + n, ld, rows, n);
  expect_close(dgu, finite_diff(ref, to_d(gu), to_d(probe)), 1e-4, 1e-4, "swiglu bwd");
}

// ---- Attention --------------------------------------------------------------------------
struct AttnCase {
  int batch, tq, tk, hq, hkv, hd, q_offset;
  bool docs;
};

// Reference: explicit softmax over allowed keys, all in double. Inputs packed
// as q(B*Tq, hq*hd), k/v(B*Tk, hkv*hd); output (B*Tq, hq*hd).
Vec attention_ref(const AttnCase& c, const Vec& q, const Vec& k, const Vec& v, const std::vector<int32_t>& doc) {
  Vec o(c.batch * c.tq * c.hq * c.hd, 0.0);
  const double scale = 1.0 / std::sqrt(double(c.hd));
  for (int b = 0; b < c.batch; ++b)
    for (int h = 0; h < c.hq; ++h) {
      const int g = h / (c.hq / c.hkv);
      for (int t = 0; t < c.tq; ++t) {
        const int lo = c.docs ? doc[b * c.tq + t] : 0, hi = std::min(c.tk, c.q_offset + t + 1);
        std::vector<double> s(c.tk, -1e300);
        double mx = -1e300;
        for (int j = lo; j < hi; ++j) {
          double d = 0;
          for (int i = 0; i < c.hd; ++i)
            d += q[(b * c.tq + t) * c.hq * c.hd + h * c.hd + i] * k[(b * c.tk + j) * c.hkv * c.hd + g * c.hd + i];
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (int j = lo; j < hi; ++j) z += std::exp(s[j] - mx);
        for (int j = lo; j < hi; ++j) {
          const double p = std::exp(s[j] - mx) / z;
          for (int i = 0; i < c.hd; ++i)
            o[(b * c.tq + t) * c.hq * c.hd + h * c.hd + i] += p * v[(b * c.tk + j) * c.hkv * c.hd + g * c.hd + i];
        }
      }
    }
  return o;
}

class CpuAttention : public CpuOps, public ::testing::WithParamInterface<AttnCase> {};

TEST_P(CpuAttention, ForwardBackward) {
  const AttnCase c = GetParam();
  const int qd = c.hq * c.hd, kvd = c.hkv * c.hd;
  auto q = randn(c.batch * c.tq * qd, 11), k = randn(c.batch * c.tk * kvd, 12), v = randn(c.batch * c.tk * kvd, 13);
  auto probe = randn(c.batch * c.tq * qd, 14);
  std::vector<int32_t> doc(c.batch * c.tq, 0);
  if (c.docs)  // two documents per row: the second starts at tq/2
    for (int b = 0; b < c.batch; ++b)
      for (int t = c.tq / 2; t < c.tq; ++t) doc[b * c.tq + t] = c.tq / 2;
  AttnShape s;
  s.batch = c.batch;
  s.tq = c.tq;
  s.tk = c.tk;
  s.n_heads = c.hq;
  s.n_kv_heads = c.hkv;
  s.head_dim = c.hd;
  s.q_offset = c.q_offset;
  s.ldq = s.ldo = qd;
  s.ldk = s.ldv = kvd;
  s.scale = 1.f / std::sqrt(float(c.hd));
  s.doc_start = c.docs ? doc.data() : nullptr;
  std::vector<float> out(q.size()), lse(c.batch * c.hq * c.tq);
  be->attention_fwd(s, q.data(), k.data(), v.data(), out.data(), lse.data());
  const Vec qd_ = to_d(q), kd = to_d(k), vd = to_d(v);
  expect_close(out, attention_ref(c, qd_, kd, vd, doc), 1e-5, 1e-4, "attention fwd");

  std::vector<float> dq(q.size()), dk(k.size()), dv(v.size());
  be->attention_bwd(s, q.data(), k.data(), v.data(), out.data(), lse.data(), probe.data(), dq.data(), dk.data(),
                    dv.data());
  const Vec pd = to_d(probe);
  expect_close(dq, finite_diff([&](const Vec& x) { return attention_ref(c, x, kd, vd, doc); }, qd_, pd), 1e-4, 1e-3,
               "attention dq");
  expect_close(dk, finite_diff([&](const Vec& x) { return attention_ref(c, qd_, x, vd, doc); }, kd, pd), 1e-4, 1e-3,
               "attention dk");
  expect_close(dv, finite_diff([&](const Vec& x) { return attention_ref(c, qd_, kd, x, doc); }, vd, pd), 1e-4, 1e-3,
               "attention dv");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuAttention,
                         ::testing::Values(AttnCase{2, 9, 9, 4, 2, 8, 0, false},     // GQA 2
                                           AttnCase{1, 70, 70, 2, 2, 4, 0, false},   // > one query block
                                           AttnCase{1, 12, 12, 4, 1, 6, 0, true},    // MQA, packed docs
                                           AttnCase{1, 3, 8, 2, 1, 4, 5, false}),
                         [](const ::testing::TestParamInfo<AttnCase>& info) {
                           const AttnCase& c = info.param;
                           return "b" + std::to_string(c.batch) + "_tq" + std::to_string(c.tq) + "_tk" +
                                  std::to_string(c.tk) + "_h" + std::to_string(c.hq) + "kv" + std::to_string(c.hkv) +
                                  "_hd" + std::to_string(c.hd) + (c.docs ? "_docs" : "");
                         });   // KV-cache decode

// ---- Cross-entropy -----------------------------------------------------------------------
TEST_F(CpuOps, CrossEntropyRows) {
  const int rows = 6, vocab = 1001;
  auto logits = randn(rows * vocab, 15, 3.f);
  std::vector<int32_t> labels = {3, 1000, rowmath::kIgnoreIndex, 0, 517, 42};
  const float scale = 0.25f;
  auto ref_loss = [&](const Vec& x) {
    Vec l(rows, 0.0);
    for (int r = 0; r < rows; ++r) {
      if (labels[r] == rowmath::kIgnoreIndex) continue;
      double mx = -1e300, z = 0;
      for (int i = 0; i < vocab; ++i) mx = std::max(mx, x[r * vocab + i]);
      for (int i = 0; i < vocab; ++i) z += std::exp(x[r * vocab + i] - mx);
      l[r] = mx + std::log(z) - x[r * vocab + labels[r]];
    }
    return l;
  };
  const Vec x = to_d(logits);
  auto grad = logits;
  std::vector<float> loss(rows);
  be->cross_entropy_rows(grad.data(), labels.data(), loss.data(), rows, vocab, scale);
  expect_close(loss, ref_loss(x), 1e-5, 1e-5, "ce loss");
  expect_close(grad, finite_diff(ref_loss, x, Vec(rows, scale)), 1e-6, 1e-3, "ce grad");
}

// ---- Embedding -----------------------------------------------------------------------------
TEST_F(CpuOps, EmbeddingForwardBackwardWithRepeatedIds) {
  const int vocab = 11, dim = 5, n = 6;
  auto table = randn(vocab * dim, 16), dout = randn(n * dim, 17);
  std::vector<int32_t> ids = {3, 7, 3, 0, 10, 3};
  std::vector<float> out(n * dim), dtable(vocab * dim, 0.f);
  be->embedding_fwd(ids.data(), table.data(), out.data(), n, dim);
  Vec want_out(n * dim), want_grad(vocab * dim, 0.0);
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < dim; ++c) {
      want_out[i * dim + c] = table[ids[i] * dim + c];
      want_grad[ids[i] * dim + c] += dout[i * dim + c];
    }
  expect_close(out, want_out, 0, 1e-7, "embedding fwd");
  be->embedding_bwd(ids.data(), dout.data(), dtable.data(), n, dim);
  expect_close(dtable, want_grad, 1e-6, 1e-6, "embedding bwd");
}

}  // namespace
}  // namespace llamaft
