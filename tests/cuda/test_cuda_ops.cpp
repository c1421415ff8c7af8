// Every CUDA backend op, forward and backward, against the CPU backend on
// seeded random inputs with odd sizes: atol + rtol*|ref| per element, NaN/inf
// checks and a guard that the output is not all zeros. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cuda/cuda_backend.hpp"

namespace llamaft {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double atol, double rtol,
                  const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0, norm = 0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << what << " non-finite at " << i;
    const double r = std::abs(double(got[i]) - want[i]) / (atol + rtol * std::abs(want[i]));
    if (r > worst) worst = r, at = i;
    norm += std::abs(got[i]);
  }
  EXPECT_GT(norm, 0.0) << what << ": all zeros";
  EXPECT_LE(worst, 1.0) << what << " worst at " << at << ": " << got[at] << " vs " << want[at];
}

// Runs `op` on both backends with the same host inputs; returns outputs.
class Dual {
 public:
  Dual() : cpu_(make_cpu_backend()), gpu_(make_cuda_backend(0)) {}
  // Buffers: host vectors mirrored to each backend.
  template <typename T>
  struct Pair {
    T* cpu;
    T* gpu;
    size_t n;
  };
  template <typename T>
  Pair<T> put(const std::vector<T>& host) {
    Pair<T> p{static_cast<T*>(cpu_->alloc_bytes(host.size() * sizeof(T))),
              static_cast<T*>(gpu_->alloc_bytes(host.size() * sizeof(T))), host.size()};
    cpu_->to_device(p.cpu, host.data(), host.size() * sizeof(T));
    gpu_->to_device(p.gpu, host.data(), host.size() * sizeof(T));
    owned_.push_back({p.cpu, p.gpu});
    return p;
  }
  template <typename T>
  std::pair<std::vector<float>, std::vector<float>> get(const Pair<T>& p) {
    std::vector<float> a(p.n), b(p.n);
    cpu_->to_host(a.data(), p.cpu, p.n * sizeof(T));
    gpu_->to_host(b.data(), p.gpu, p.n * sizeof(T));
    return {b, a};  // (gpu, cpu reference)
  }
  void run(const std::function<void(Backend&, bool gpu)>& op) {
    op(*cpu_, false);
    op(*gpu_, true);
    gpu_->synchronize();
  }
  ~Dual() {
    for (auto& [c, g] : owned_) {
      cpu_->free_bytes(c);
      gpu_->free_bytes(g);
    }
  }

 private:
  std::unique_ptr<Backend> cpu_, gpu_;
  std::vector<std::pair<void*, void*>> owned_;
};

#define SKIP_WITHOUT_GPU() \
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device"

TEST(CudaOps, Gemm) {
  SKIP_WITHOUT_GPU();
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      Dual d;
      const int m = 67, n = 45, k = 129;
      auto a = d.put(randn(m * k, 1)), b = d.put(randn(k * n, 2)), c = d.put(randn(m * n, 3));
      d.run([&](Backend& be, bool g) {
        be.gemm(ta, tb, m, n, k, 0.5f, g ? a.gpu : a.cpu, ta ? m : k, g ? b.gpu : b.cpu, tb ? k : n, 1.f,
                g ? c.gpu : c.cpu, n);
      });
      auto [got, want] = d.get(c);
      expect_close(got, want, 1e-4, 1e-4, "gemm");
    }
}

TEST(CudaOps, RmsNormForwardBackward) {
  SKIP_WITHOUT_GPU();
  Dual d;
  const int rows = 13, dim = 67;
  auto x = d.put(randn(rows * dim, 4)), w = d.put(randn(dim, 5)), dy = d.put(randn(rows * dim, 6));
  auto y = d.put(std::vector<float>(rows * dim)), rstd = d.put(std::vector<float>(rows));
  auto dx = d.put(std::vector<float>(rows * dim)), dw = d.put(std::vector<float>(dim, 0.f));
  d.run([&](Backend& be, bool g) {
    auto P = [g](auto& p) { return g ? p.gpu : p.cpu; };
    be.rmsnorm_fwd(P(x), P(w), P(y), P(rstd), rows, dim, 1e-5f);
    be.rmsnorm_bwd(P(dy), P(x), P(w), P(rstd), P(dx), P(dw), rows, dim);
  });
  for (auto* p : {&y, &rstd, &dx, &dw}) {
    auto [got, want] = d.get(*p);
    expect_close(got, want, 1e-5, 1e-4, "rmsnorm");
  }
}

TEST(CudaOps, RopeSwigluEmbedding) {
  SKIP_WITHOUT_GPU();
  Dual d;
  const int rows = 11, heads = 3, hd = 64, ld = heads * hd + 7, n = 37, vocab = 19, dim = 33;
  std::vector<int32_t> pos_h(rows), ids_h(rows);
  for (int i = 0; i < rows; ++i) pos_h[i] = i * 97 % 4096, ids_h[i] = (i * 5) % vocab;
  std::vector<float> inv_h(hd / 2);
  for (int i = 0; i < hd / 2; ++i) inv_h[i] = 1.f / std::pow(500000.f, 2.f * i / hd);
  auto pos = d.put(pos_h);
  auto ids = d.put(ids_h);
  auto inv = d.put(inv_h);
  auto x = d.put(randn(rows * ld, 7)), gu = d.put(randn(rows * 2 * n, 8, 2.f)), dout = d.put(randn(rows * n, 9));
  auto out = d.put(std::vector<float>(rows * n)), dgu = d.put(std::vector<float>(rows * 2 * n));
  auto table = d.put(randn(vocab * dim, 10)), emb = d.put(std::vector<float>(rows * dim));
  auto demb = d.put(randn(rows * dim, 11)), dtable = d.put(std::vector<float>(vocab * dim, 0.f));
  d.run([&](Backend& be, bool g) {
    auto P = [g](auto& p) { return g ? p.gpu : p.cpu; };
    be.rope(P(x), ld, P(pos), P(inv), rows, heads, hd, false);
    be.rope(P(x), ld, P(pos), P(inv), rows, heads - 1, hd, true);
    be.swiglu_fwd(P(gu), P(gu) + n, 2 * n, P(out), rows, n);
    be.swiglu_bwd(P(dout), P(gu), P(gu) + n, 2 * n, P(dgu), P(dgu) + n, 2 * n, rows, n);
    be.embedding_fwd(P(ids), P(table), P(emb), rows, dim);
    be.embedding_bwd(P(ids), P(demb), P(dtable), rows, dim);
  });
  for (auto* p : {&x, &out, &dgu, &emb, &dtable}) {
    auto [got, want] = d.get(*p);
    expect_close(got, want, 1e-5, 1e-4, "rope/swiglu/embedding");
  }
}

TEST(CudaOps, CrossEntropyRowsAndReductions) {
  SKIP_WITHOUT_GPU();
  Dual d;
  const int rows = 9, vocab = 1001;
  std::vector<int32_t> labels_h = {0, 1000, -100, 5, 17, 999, 3, -100, 500};
  auto logits = d.put(randn(rows * vocab, 12, 4.f));
  auto labels = d.put(labels_h);
  auto loss = d.put(std::vector<float>(rows));
  double sums[2][2];
  d.run([&](Backend& be, bool g) {
    auto P = [g](auto& p) { return g ? p.gpu : p.cpu; };
    be.cross_entropy_rows(P(logits), P(labels), P(loss), rows, vocab, 0.125f);
    sums[g][0] = be.sum(P(loss), rows);
    sums[g][1] = be.sum_squares(P(logits), rows * vocab);
  });
  for (auto* p : {&logits, &loss}) {
    auto [got, want] = d.get(*p);
    expect_close(got, want, 1e-6, 1e-4, "cross entropy");
  }
  EXPECT_NEAR(sums[1][0], sums[0][0], 1e-4 * std::abs(sums[0][0]));
  EXPECT_NEAR(sums[1][1], sums[0][1], 1e-4 * std::abs(sums[0][1]));
}

TEST(CudaOps, AdamW) {
  SKIP_WITHOUT_GPU();
  Dual d;
  const size_t n = 100003;
  auto p = d.put(randn(n, 13)), m = d.put(randn(n, 14, 0.1f)), v = d.put(randn(n, 15, 0.f)), g = d.put(randn(n, 16));
  rowmath::AdamWParams a{0.9f, 0.999f, 1e-8f, 0.999f, 1e-3f, 0.0316f, 0.7f};
  d.run([&](Backend& be, bool gpu) {
    auto P = [gpu](auto& x) { return gpu ? x.gpu : x.cpu; };
    be.adamw(P(p), P(m), P(v), P(g), n, a);
  });
  for (auto* x : {&p, &m}) {
    auto [got, want] = d.get(*x);
    expect_close(got, want, 1e-6, 1e-5, "adamw");
  }
}

struct AttnCase {
  int batch, tq, tk, hq, hkv, hd, q_offset;
  bool docs;
};
class CudaAttention : public ::testing::TestWithParam<AttnCase> {};

TEST_P(CudaAttention, ForwardBackward) {
  SKIP_WITHOUT_GPU();
  const AttnCase c = GetParam();
  Dual d;
  const int qd = c.hq * c.hd, kvd = c.hkv * c.hd;
  std::vector<int32_t> doc_h(c.batch * c.tq, 0);
  if (c.docs)
    for (int b = 0; b < c.batch; ++b)
      for (int t = c.tq / 3; t < c.tq; ++t) doc_h[b * c.tq + t] = c.tq / 3;
  auto q = d.put(randn(c.batch * c.tq * qd, 17)), k = d.put(randn(c.batch * c.tk * kvd, 18));
  auto v = d.put(randn(c.batch * c.tk * kvd, 19)), dout = d.put(randn(c.batch * c.tq * qd, 20));
  auto out = d.put(std::vector<float>(c.batch * c.tq * qd)), lse = d.put(std::vector<float>(c.batch * c.hq * c.tq));
  auto dq = d.put(std::vector<float>(q.n)), dk = d.put(std::vector<float>(k.n)), dv = d.put(std::vector<float>(v.n));
  auto doc = d.put(doc_h);
  d.run([&](Backend& be, bool g) {
    auto P = [g](auto& p) { return g ? p.gpu : p.cpu; };
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
    s.doc_start = c.docs ? P(doc) : nullptr;
    be.attention_fwd(s, P(q), P(k), P(v), P(out), P(lse));
    be.attention_bwd(s, P(q), P(k), P(v), P(out), P(lse), P(dout), P(dq), P(dk), P(dv));
  });
  for (auto* p : {&out, &lse, &dq, &dk, &dv}) {
    auto [got, want] = d.get(*p);
    expect_close(got, want, 1e-4, 1e-3, "attention");
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttention,
                         ::testing::Values(AttnCase{2, 37, 37, 4, 1, 32, 0, false},
                                           AttnCase{1, 300, 300, 8, 2, 64, 0, true},
                                           AttnCase{1, 1, 77, 4, 4, 128, 76, false},
                                           AttnCase{2, 129, 129, 2, 2, 128, 0, false}),
                         [](const ::testing::TestParamInfo<AttnCase>& info) {
                           const AttnCase& c = info.param;
                           return "b" + std::to_string(c.batch) + "_tq" + std::to_string(c.tq) + "_tk" +
                                  std::to_string(c.tk) + "_h" + std::to_string(c.hq) + "kv" + std::to_string(c.hkv) +
                                  "_hd" + std::to_string(c.hd) + (c.docs ? "_docs" : "");
                         });

}  // namespace
}  // namespace llamaft
