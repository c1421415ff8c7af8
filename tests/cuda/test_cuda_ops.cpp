// Every CUDA backend op except attention (test_cuda_attention.cpp), forward
// and backward, against the CPU backend on seeded random inputs with odd
// sizes; the backend's pool, OOM message and determinism. Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "adamw.cuh"
#include "backend/cuda/cuda_backend.hpp"
#include "core/error.hpp"
#include "cuda_test_util.hpp"
#include "core/dtype.hpp"
#include "quant/quant.hpp"

namespace llamaft {
namespace {

using cuda_test::Dual;
using cuda_test::randn;
using cuda_test::Tol;

TEST(CudaBackend, DeviceProbeNeverThrows) {
  bool available = false;
  EXPECT_NO_THROW(available = cuda_device_available());
  if (!available) {
    EXPECT_FALSE(cuda_device_available());  // and stays answerable
  }
}

// gpu_check.sh's first stage: with LLAMAFT_REQUIRE_GPU=1 this fails, naming
// the CUDA error, unless a device is usable.
TEST(CudaBackend, DeviceIsUsable) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  EXPECT_GT(count, 0);
  auto be = make_cuda_backend(0, cuda_test::kTestPoolBytes);
  EXPECT_NE(be->counters(), nullptr);
}

// cudaGetDeviceCount's "insufficient driver" means no GPU only where no
// driver library exists; with a driver present it is an error to report
// (codes from the CUDA runtime: 35 insufficient driver, 100 no device, 999 unknown).
TEST(CudaBackend, ProbeTellsNoGpuFromAnUnusableDriver) {
  EXPECT_TRUE(classify_cuda_probe(0, "no error", 1, true).available);
  EXPECT_FALSE(classify_cuda_probe(0, "no error", 0, true).available);
  const CudaProbe no_device = classify_cuda_probe(100, "no CUDA-capable device is detected", 0, true);
  EXPECT_FALSE(no_device.available);
  EXPECT_TRUE(no_device.error.empty());
  const CudaProbe no_driver = classify_cuda_probe(35, "CUDA driver version is insufficient", 0, false);
  EXPECT_FALSE(no_driver.available);
  EXPECT_TRUE(no_driver.error.empty());
  const CudaProbe old_driver = classify_cuda_probe(35, "CUDA driver version is insufficient", 0, true);
  EXPECT_FALSE(old_driver.available);
  EXPECT_NE(old_driver.error.find("insufficient"), std::string::npos) << old_driver.error;
  EXPECT_NE(old_driver.error.find("update the driver"), std::string::npos) << old_driver.error;
  EXPECT_FALSE(classify_cuda_probe(999, "unknown error", 0, true).error.empty());
}

TEST(CudaBackend, DefaultPoolLeavesAReserve) {
  const size_t gib = size_t(1) << 30;
  EXPECT_EQ(cuda_default_pool_bytes(70 * gib, 80 * gib), 70 * gib - 80 * gib / 32);
  // Three NCCL communicators (a multi-rank job): 2 GiB more each.
  EXPECT_EQ(cuda_default_pool_bytes(130 * gib, 141 * gib, 3), 130 * gib - 141 * gib / 32 - 6 * gib);
  EXPECT_EQ(cuda_default_pool_bytes(10 * gib, 24 * gib), 8 * gib);
  EXPECT_EQ(cuda_default_pool_bytes(3 * gib, 24 * gib), 3 * gib / 2);  // too little left: half
}

TEST(CudaBackend, PoolAccountingReuseAndOutOfMemoryMessage) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  const size_t pool = size_t(64) << 20;
  auto be = make_cuda_backend(0, pool);
  void* a = be->alloc_bytes(1000);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(be->live_bytes(), DeviceArena::round_up(1000));
  be->free_bytes(a);
  EXPECT_EQ(be->live_bytes(), 0u);
  void* b = be->alloc_bytes(1000);
  EXPECT_EQ(a, b) << "a freed block of the same size is reused";
  be->free_bytes(b);
  EXPECT_EQ(be->peak_bytes(), DeviceArena::round_up(1000));
  try {
    be->alloc_bytes(2 * pool);
    FAIL() << "an allocation twice the pool size succeeded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("requested " + std::to_string(2 * pool) + " bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("bytes free"), std::string::npos) << msg;
    EXPECT_NE(msg.find("micro_batch_size"), std::string::npos) << msg;
  }
}

TEST(CudaOps, Gemm) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  const int m = 67, n = 45, k = 129, pad = 3;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      Dual d;
      const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
      auto a = d.put(randn(size_t(ta ? k : m) * lda, 1)), b = d.put(randn(size_t(tb ? n : k) * ldb, 2));
      auto c = d.put(randn(size_t(m) * ldc, 3));
      d.run([&](Backend& be, bool g) {
        be.gemm(ta, tb, m, n, k, 0.5f, a.on(g), lda, b.on(g), ldb, 0.75f, c.on(g), ldc);
      });
      d.expect_close("gemm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb), c, Tol{1e-4, 1e-4});
    }
}

TEST(CudaOps, FillAxpyScale) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Dual d;
  const size_t n = 100003;
  auto x = d.put(randn(n, 4)), y = d.put(randn(n, 5)), f = d.put(randn(1001, 6));
  d.run([&](Backend& be, bool g) {
    be.axpy(-0.37f, x.on(g), y.on(g), n);
    be.scale(x.on(g), 1.7f, n);
    be.fill(f.on(g), 2.5f, 999);  // leaves the last two alone
  });
  d.expect_close("axpy", y, Tol{1e-6, 1e-6});
  d.expect_close("scale", x, Tol{1e-6, 1e-6});
  d.expect_close("fill", f, Tol{0, 0});
}

TEST(CudaOps, SumAndSumOfSquaresInDouble) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Dual d;
  for (size_t n : {size_t(0), size_t(1), size_t(1000), size_t(4097), size_t(3000017)}) {
    const std::vector<float> host = randn(n, 7 + uint32_t(n), 3.f);
    double sum = 0, sq = 0;
    for (float v : host) sum += v, sq += double(v) * v;
    auto x = d.put(host.empty() ? std::vector<float>(1, 99.f) : host);
    const double gpu_sum = d.gpu().sum(x.gpu, n), gpu_sq = d.gpu().sum_squares(x.gpu, n);
    EXPECT_NEAR(gpu_sum, sum, 1e-12 * (sq + 1)) << "n " << n;
    EXPECT_NEAR(gpu_sq, sq, 1e-12 * (sq + 1)) << "n " << n;
    if (n > 1) {
      EXPECT_NE(gpu_sq, 0.0);
    }
  }
}

TEST(CudaOps, AdamWMatchesCpuAndMultiTensorMatchesSingle) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Dual d;
  const size_t n = 100003;
  auto p = d.put(randn(n, 13)), m = d.put(randn(n, 14, 0.1f)), g = d.put(randn(n, 16));
  std::vector<float> v_host = randn(n, 15, 0.01f);
  for (auto& x : v_host) x = x * x;  // a second moment is non-negative
  auto v = d.put(v_host);
  const rowmath::AdamWParams a{0.9f, 0.95f, 1e-8f, 0.999f, 1e-3f, 0.0316f, 0.7f};
  for (int step = 0; step < 3; ++step) d.run([&](Backend& be, bool on) { be.adamw(p.on(on), m.on(on), v.on(on), g.on(on), n, a); });
  d.expect_close("adamw p", p, Tol{1e-6, 1e-5});
  d.expect_close("adamw m", m, Tol{1e-7, 1e-5});
  d.expect_close("adamw v", v, Tol{1e-9, 1e-5});

  // 30 tensors of ragged sizes (some empty) through adamw_multi must equal one adamw per tensor.
  std::vector<size_t> sizes;
  for (int i = 0; i < 30; ++i) sizes.push_back(i % 7 == 3 ? 0 : size_t(1 + (i * 7919) % 20000));
  const size_t total = std::accumulate(sizes.begin(), sizes.end(), size_t(0));
  auto p2 = d.put(randn(total, 20)), m2 = d.put(randn(total, 21, 0.1f)), v2 = d.put(std::vector<float>(total, 0.02f));
  auto g2 = d.put(randn(total, 22));
  std::vector<cuda::AdamWTensor<float>> list;
  size_t off = 0;
  for (size_t s : sizes) {
    list.push_back({p2.gpu + off, m2.gpu + off, v2.gpu + off, g2.gpu + off, s});
    d.cpu().adamw(p2.cpu + off, m2.cpu + off, v2.cpu + off, g2.cpu + off, s, a);
    off += s;
  }
  cuda::adamw_multi(list.data(), int(list.size()), a, d.cuda().stream());
  d.gpu().synchronize();
  d.expect_close("adamw_multi p", p2, Tol{1e-6, 1e-5});
  d.expect_close("adamw_multi m", m2, Tol{1e-7, 1e-5});
  d.expect_close("adamw_multi v", v2, Tol{1e-9, 1e-5});

  // The optimizer's batched entry points (Backend::adamw_many, sum_squares_many)
  // against the CPU's loops over the same ragged list.
  std::vector<Backend::AdamWShard> cpu_list, gpu_list;
  std::vector<const float*> cpu_g, gpu_g;
  off = 0;
  for (size_t s : sizes) {
    cpu_list.push_back({p2.cpu + off, m2.cpu + off, v2.cpu + off, g2.cpu + off, s});
    gpu_list.push_back({p2.gpu + off, m2.gpu + off, v2.gpu + off, g2.gpu + off, s});
    cpu_g.push_back(g2.cpu + off);
    gpu_g.push_back(g2.gpu + off);
    off += s;
  }
  const int count = int(sizes.size());
  const double want = d.cpu().sum_squares_many(cpu_g.data(), sizes.data(), count);
  EXPECT_NEAR(d.gpu().sum_squares_many(gpu_g.data(), sizes.data(), count), want, 1e-12 * want);
  EXPECT_GT(want, 0.0);
  d.cpu().adamw_many(cpu_list.data(), count, a);
  d.gpu().adamw_many(gpu_list.data(), count, a);
  d.gpu().synchronize();
  d.expect_close("adamw_many p", p2, Tol{1e-6, 1e-5});
  d.expect_close("adamw_many v", v2, Tol{1e-9, 1e-5});
}

TEST(CudaOps, EmbeddingForwardBackward) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Dual d;
  const int n = 301, dim = 67, vocab = 1001;
  std::vector<int32_t> ids_host(n);
  for (int i = 0; i < n; ++i) ids_host[i] = (i * 37) % 50 == 7 ? vocab - 1 : (i * 613) % 97;  // many repeats
  ids_host[0] = 0;
  auto ids = d.put(ids_host);
  auto table = d.put(randn(size_t(vocab) * dim, 30)), out = d.put(std::vector<float>(size_t(n) * dim));
  auto dout = d.put(randn(size_t(n) * dim, 31)), dtable = d.put(randn(size_t(vocab) * dim, 32, 0.1f));
  d.run([&](Backend& be, bool g) {
    be.embedding_fwd(ids.on(g), table.on(g), out.on(g), n, dim);
    be.embedding_bwd(ids.on(g), dout.on(g), dtable.on(g), n, dim);  // accumulates
  });
  d.expect_close("embedding out", out, Tol{0, 0});
  d.expect_close("embedding dtable", dtable, Tol{1e-5, 1e-5});
  // No atomics: the same gradient to the bit on every run.
  std::vector<std::vector<float>> runs;
  for (int rep = 0; rep < 2; ++rep) {
    auto fresh = d.put(std::vector<float>(size_t(vocab) * dim, 0.f));
    d.gpu().embedding_bwd(ids.gpu, dout.gpu, fresh.gpu, n, dim);
    runs.push_back(d.gpu_values(fresh));
  }
  EXPECT_EQ(runs[0], runs[1]);
}

TEST(CudaOps, RmsNormForwardBackward) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  struct Case {
    int rows, dim;
  };
  for (Case c : {Case{37, 67}, Case{5, 4099}, Case{1000, 64}, Case{1, 1}}) {
    SCOPED_TRACE("rows " + std::to_string(c.rows) + " dim " + std::to_string(c.dim));
    Dual d;
    const size_t n = size_t(c.rows) * c.dim;
    auto x = d.put(randn(n, 40, 2.f)), w = d.put(randn(c.dim, 41)), dy = d.put(randn(n, 42));
    auto y = d.put(std::vector<float>(n)), rstd = d.put(std::vector<float>(c.rows));
    auto dx = d.put(std::vector<float>(n)), dw = d.put(randn(c.dim, 43, 0.5f));
    auto dx_only = d.put(std::vector<float>(n));
    d.run([&](Backend& be, bool g) {
      be.rmsnorm_fwd(x.on(g), w.on(g), y.on(g), rstd.on(g), c.rows, c.dim, 1e-5f);
      be.rmsnorm_bwd(dy.on(g), x.on(g), w.on(g), rstd.on(g), dx.on(g), dw.on(g), c.rows, c.dim);  // dw accumulates
      be.rmsnorm_bwd(dy.on(g), x.on(g), w.on(g), rstd.on(g), dx_only.on(g), nullptr, c.rows, c.dim);
    });
    d.expect_close("rmsnorm y", y, Tol{1e-5, 1e-5});
    d.expect_close("rmsnorm rstd", rstd, Tol{1e-6, 1e-5});
    d.expect_close("rmsnorm dx", dx, Tol{1e-5, 1e-4});
    d.expect_close("rmsnorm dx (no dw)", dx_only, Tol{1e-5, 1e-4});
    d.expect_close("rmsnorm dw", dw, Tol{1e-4, 1e-4});
  }
}

TEST(CudaOps, RopeForwardInverseAndRoundTrip) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  for (int hd : {8, 64, 128}) {
    SCOPED_TRACE("head_dim " + std::to_string(hd));
    Dual d;
    const int rows = 37, heads = 3, ld = heads * hd + 5;  // 5 columns past the heads must not change
    std::vector<int32_t> pos_host(rows);
    for (int i = 0; i < rows; ++i) pos_host[i] = (i * 977) % 8192;
    std::vector<float> inv_host(hd / 2);
    for (int i = 0; i < hd / 2; ++i) inv_host[i] = 1.f / std::pow(500000.f, 2.f * i / hd);
    auto pos = d.put(pos_host);
    auto inv = d.put(inv_host);
    const std::vector<float> x_host = randn(size_t(rows) * ld, 50);
    auto x = d.put(x_host), y = d.put(x_host);
    d.run([&](Backend& be, bool g) {
      be.rope(x.on(g), ld, pos.on(g), inv.on(g), rows, heads, hd, false);
      be.rope(y.on(g), ld, pos.on(g), inv.on(g), rows, heads, hd, true);
    });
    d.expect_close("rope forward", x, Tol{1e-5, 1e-5});
    d.expect_close("rope inverse", y, Tol{1e-5, 1e-5});
    d.run([&](Backend& be, bool g) { be.rope(x.on(g), ld, pos.on(g), inv.on(g), rows, heads, hd, true); });
    cuda_test::expect_close("rope round trip", d.gpu_values(x), x_host, Tol{1e-5, 1e-5});
  }
}

TEST(CudaOps, SwigluForwardBackward) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Dual d;
  const int rows = 37, n = 67;
  // The model's layout: gate|up side by side (ld 2n), dgate|dup likewise.
  auto gu = d.put(randn(size_t(rows) * 2 * n, 60, 2.f)), dout = d.put(randn(size_t(rows) * n, 61));
  auto out = d.put(std::vector<float>(size_t(rows) * n)), dgu = d.put(randn(size_t(rows) * 2 * n, 62));
  // Separate gradient buffers with a wider stride: the gap columns must stay.
  const int ld_sep = n + 9;
  auto dg = d.put(randn(size_t(rows) * ld_sep, 63)), du = d.put(randn(size_t(rows) * ld_sep, 64));
  d.run([&](Backend& be, bool g) {
    be.swiglu_fwd(gu.on(g), gu.on(g) + n, 2 * n, out.on(g), rows, n);
    be.swiglu_bwd(dout.on(g), gu.on(g), gu.on(g) + n, 2 * n, dgu.on(g), dgu.on(g) + n, 2 * n, rows, n);
    be.swiglu_bwd(dout.on(g), gu.on(g), gu.on(g) + n, 2 * n, dg.on(g), du.on(g), ld_sep, rows, n);
  });
  d.expect_close("swiglu out", out, Tol{1e-6, 1e-5});
  d.expect_close("swiglu dgate|dup", dgu, Tol{1e-6, 1e-5});
  d.expect_close("swiglu dgate strided", dg, Tol{1e-6, 1e-5});
  d.expect_close("swiglu dup strided", du, Tol{1e-6, 1e-5});
}

TEST(CudaOps, CrossEntropyRows) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  struct Case {
    int vocab;
    std::vector<int32_t> labels;
  };
  // 1001: one vocab chunk; 32007: four chunks, labels in the first, middle and last.
  for (const Case& c : {Case{1001, {0, 1000, -100, 5, 17, 999, 3, -100, 500}},
                        Case{32007, {32006, 0, 8191, 8192, -100, 20000}}}) {
    SCOPED_TRACE("vocab " + std::to_string(c.vocab));
    Dual d;
    const int rows = int(c.labels.size());
    auto logits = d.put(randn(size_t(rows) * c.vocab, 70, 4.f));
    auto labels = d.put(c.labels);
    auto loss = d.put(std::vector<float>(rows, -1.f));
    d.run([&](Backend& be, bool g) {
      be.cross_entropy_rows(logits.on(g), labels.on(g), loss.on(g), rows, c.vocab, 0.125f);
    });
    d.expect_close("cross-entropy loss", loss, Tol{1e-5, 1e-5});
    d.expect_close("cross-entropy gradient", logits, Tol{1e-7, 1e-4});
    const std::vector<float> grad = d.gpu_values(logits);
    for (int r = 0; r < rows; ++r) {
      if (c.labels[r] != rowmath::kIgnoreIndex) continue;
      for (int i = 0; i < c.vocab; ++i) ASSERT_EQ(grad[size_t(r) * c.vocab + i], 0.f) << "ignored row " << r;
    }
  }
}

TEST(CudaOps, CrossEntropyOutOfRangeLabelGivesNaNLoss) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Dual d;
  const int vocab = 300;
  auto logits = d.put(randn(2 * vocab, 71));
  auto labels = d.put(std::vector<int32_t>{vocab, 7});
  auto loss = d.put(std::vector<float>(2, 0.f));
  d.gpu().cross_entropy_rows(logits.gpu, labels.gpu, loss.gpu, 2, vocab, 1.f);
  const std::vector<float> got = d.gpu_values(loss);
  EXPECT_TRUE(std::isnan(got[0])) << got[0];
  EXPECT_TRUE(std::isfinite(got[1]) && got[1] > 0.f) << got[1];
}

TEST(CudaOps, ReductionsAndNormGradientsAreDeterministic) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Dual d;
  const int rows = 513, dim = 300;
  auto x = d.put(randn(size_t(rows) * dim, 80)), w = d.put(randn(dim, 81)), dy = d.put(randn(size_t(rows) * dim, 82));
  auto rstd = d.put(std::vector<float>(rows)), y = d.put(std::vector<float>(size_t(rows) * dim));
  auto dx = d.put(std::vector<float>(size_t(rows) * dim));
  std::vector<std::vector<float>> dws;
  std::vector<double> sums;
  for (int rep = 0; rep < 2; ++rep) {
    auto dw = d.put(std::vector<float>(dim, 0.f));
    Backend& be = d.gpu();
    be.rmsnorm_fwd(x.gpu, w.gpu, y.gpu, rstd.gpu, rows, dim, 1e-6f);
    be.rmsnorm_bwd(dy.gpu, x.gpu, w.gpu, rstd.gpu, dx.gpu, dw.gpu, rows, dim);
    dws.push_back(d.gpu_values(dw));
    sums.push_back(be.sum_squares(dx.gpu, size_t(rows) * dim));
  }
  EXPECT_EQ(dws[0], dws[1]);
  EXPECT_EQ(sums[0], sums[1]);
}

}  // namespace
}  // namespace llamaft

namespace llamaft::cuda_test {
namespace {

// A quantized block-like unit: two fp32 norms around linear weights with a
// partial block and more than one 64 x 256 group, over 3 shard regions.
TEST(CudaOps, DequantizeUnitMatchesCpuNf4Int8AndBf16) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  // q_proj: 21000 values, 2 groups, the last block partial.
  const Unit unit = make_unit({{"input_layernorm.weight", {40}},
                               {"self_attn.q_proj.weight", {300, 70}},
                               {"post_attention_layernorm.weight", {40}},
                               {"mlp.down_proj.weight", {33, 64}}});
  const std::vector<float> src = randn(size_t(unit.numel), 91, 0.05f);
  for (quant::Kind kind : {quant::Kind::kNf4, quant::Kind::kNf4Plain, quant::Kind::kInt8, quant::Kind::kBf16}) {
    SCOPED_TRACE(quant::kind_name(kind));
    const int shards = 3;
    const quant::UnitCodec codec(unit, kind, shards);
    const std::vector<float> regions = test::quantized_regions(unit, codec, shards, src);
    Dual d;
    auto in = d.put(regions);
    auto out = d.put(std::vector<float>(size_t(unit.numel), 7.f));
    d.run([&](Backend& be, bool g) { be.dequantize_unit(codec, in.on(g), out.on(g)); });
    d.expect_close("dequantized unit", out, Tol{1e-30, 0});
  }
}

TEST(CudaOps, LoraDropoutMatchesCpu) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Dual d;
  const int rows = 45, cols = 77, seq = 15;
  const std::vector<uint64_t> keys = {11, 22, 33};
  auto x = d.put(randn(size_t(rows) * cols, 92)), y = d.put(std::vector<float>(size_t(rows) * cols));
  d.run([&](Backend& be, bool g) {
    be.dropout(x.on(g), y.on(g), rows, cols, seq, keys.data(), 5, 0.3f);
    be.dropout(x.on(g), x.on(g), rows, cols, seq, keys.data(), 6, 0.1f);  // in place
  });
  d.expect_close("dropout", y, Tol{1e-30, 1e-7});
  d.expect_close("dropout in place", x, Tol{1e-30, 1e-7});
}

}  // namespace
}  // namespace llamaft::cuda_test

namespace llamaft::cuda_test {
namespace {

// bf16 parameter gathers: pack a shard (odd length), unpack three strided shards.
TEST(CudaOps, Bf16PackUnpackMatchesCpu) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Dual d;
  const size_t n = 1001, words = (n + 1) / 2;
  std::vector<float> src = randn(3 * n, 93, 5.f);
  src[7] = 1e-40f;  // a denormal
  src[8] = -0.f;
  auto x = d.put(src);
  auto packed = d.put(std::vector<float>(3 * words, 0.f)), out = d.put(std::vector<float>(3 * n, 9.f));
  d.run([&](Backend& be, bool g) {
    for (int r = 0; r < 3; ++r) be.pack_bf16(x.on(g) + r * n, packed.on(g) + r * words, n);
    be.unpack_bf16(packed.on(g), words, out.on(g), n, 3);
  });
  d.expect_close("bf16 round trip", out, Tol{1e-30, 0});
  // And it is bf16 rounding: within half a bf16 ulp of the input.
  std::vector<float> host(3 * n);
  d.gpu().to_host(host.data(), out.gpu, host.size() * sizeof(float));
  for (size_t i = 0; i < host.size(); ++i)
    ASSERT_LE(std::abs(host[i] - src[i]), std::abs(src[i]) * (1.f / 256) + 1e-38f) << i;
}

}  // namespace
}  // namespace llamaft::cuda_test
