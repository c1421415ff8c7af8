// Every bf16-storage op of the CUDA backend (train.param_dtype = bf16)
// against the CPU backend. Inputs are rounded to bf16 once on the host: the
// CPU computes on the rounded values in fp32 (the reference), the GPU on the
// same values stored as bf16, computing in fp32 and rounding what it stores.
// A bf16 output is therefore within half a bf16 ulp (2^-8 relative: round to
// nearest even, where truncation would be off by up to 2^-7) of the
// reference, plus the fp32 reordering; fp32 outputs (statistics, losses,
// weight gradients) keep fp32 tolerances. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.hpp"
#include "cuda_test_util.hpp"
#include "quant/quant.hpp"

namespace llamaft::cuda_test {
namespace {

constexpr double kHalfUlp = 1.02 / 256;     // relative, with room for fp32 reordering
constexpr Tol kBf16Out{1e-6, kHalfUlp};

std::vector<float> rounded(std::vector<float> v) {
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}

// A tensor held in fp32 on the CPU backend and in bf16 on the CUDA backend,
// from the same bf16-rounded host values.
struct B16 {
  float* cpu = nullptr;
  bf16* gpu = nullptr;
  size_t n = 0;
};

class Bf16Dual {
 public:
  B16 put(const std::vector<float>& host_in) {
    const std::vector<float> host = rounded(host_in);
    std::vector<bf16> bits(host.size());
    for (size_t i = 0; i < host.size(); ++i) bits[i] = bf16(host[i]);
    B16 b;
    b.n = host.size();
    b.cpu = static_cast<float*>(d.cpu().alloc_bytes(b.n * sizeof(float)));
    b.gpu = static_cast<bf16*>(d.gpu().alloc_bytes(b.n * sizeof(bf16)));
    d.cpu().to_device(b.cpu, host.data(), b.n * sizeof(float));
    d.gpu().to_device(b.gpu, bits.data(), b.n * sizeof(bf16));
    owned_.emplace_back(b.cpu, b.gpu);
    return b;
  }
  // fp32 on both backends.
  template <typename T>
  Dual::Buf<T> putf(const std::vector<T>& host) {
    return d.put(host);
  }
  std::vector<float> gpu_values(const B16& b) {
    std::vector<bf16> bits(b.n);
    d.gpu().to_host(bits.data(), b.gpu, b.n * sizeof(bf16));
    std::vector<float> v(b.n);
    for (size_t i = 0; i < b.n; ++i) v[i] = static_cast<float>(bits[i]);
    return v;
  }
  std::vector<float> cpu_values(const B16& b) {
    std::vector<float> v(b.n);
    d.cpu().to_host(v.data(), b.cpu, b.n * sizeof(float));
    return v;
  }
  void expect_close(const std::string& what, const B16& b, Tol tol) {
    cuda_test::expect_close(what, gpu_values(b), cpu_values(b), tol);
  }
  void expect_close(const std::string& what, const Dual::Buf<float>& b, Tol tol) { d.expect_close(what, b, tol); }
  ~Bf16Dual() {
    for (auto& [c, g] : owned_) {
      d.cpu().free_bytes(c);
      d.gpu().free_bytes(g);
    }
  }

  Dual d;

 private:
  std::vector<std::pair<void*, void*>> owned_;
};

// Strided operands, all transposes, an A that starts one element in (2-byte
// aligned: no cuBLASLt algorithm in the emulator, so the cuBLAS fallback
// runs), bf16 output and fp32 output accumulated with beta = 1 (the weight
// gradients).
TEST(CudaBf16, GemmBf16AndFp32Outputs) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  const int m = 67, n = 45, k = 129, pad = 3;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int offset : {0, 1}) {
        SCOPED_TRACE("ta " + std::to_string(ta) + " tb " + std::to_string(tb) + " offset " + std::to_string(offset));
        Bf16Dual x;
        const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
        auto a = x.put(randn(size_t(ta ? k : m) * lda + 1, 11)), b = x.put(randn(size_t(tb ? n : k) * ldb, 12));
        auto c = x.put(randn(size_t(m) * ldc, 13, 4.f));
        auto c32 = x.putf(randn(size_t(m) * ldc, 14));
        Backend& cpu = x.d.cpu();
        Backend& gpu = x.d.gpu();
        cpu.gemm(ta, tb, m, n, k, 0.5f, a.cpu + offset, lda, b.cpu, ldb, 0.75f, c.cpu, ldc);
        gpu.gemm(ta, tb, m, n, k, 0.5f, a.gpu + offset, lda, b.gpu, ldb, 0.75f, c.gpu, ldc);
        cpu.gemm(ta, tb, m, n, k, 1.f, a.cpu + offset, lda, b.cpu, ldb, 1.f, c32.cpu, ldc);
        gpu.gemm(ta, tb, m, n, k, 1.f, a.gpu + offset, lda, b.gpu, ldb, 1.f, c32.gpu, ldc);
        gpu.synchronize();
        x.expect_close("bf16 C", c, Tol{1e-4, kHalfUlp});
        x.expect_close("fp32 C", c32, Tol{1e-4, 1e-4});
      }
}

TEST(CudaBf16, FillAxpyEmbedding) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Bf16Dual x;
  const size_t n = 10007;
  auto p = x.put(randn(n, 1)), q = x.put(randn(n, 2)), f = x.put(randn(101, 3));
  const int rows = 301, dim = 67, vocab = 1001;
  std::vector<int32_t> ids_host(rows);
  for (int i = 0; i < rows; ++i) ids_host[i] = (i * 613) % 97 + (i % 50 == 7 ? vocab - 98 : 0);
  auto ids = x.putf(ids_host);
  auto table = x.put(randn(size_t(vocab) * dim, 4)), out = x.put(std::vector<float>(size_t(rows) * dim));
  auto dout = x.put(randn(size_t(rows) * dim, 5));
  auto dtable = x.putf(randn(size_t(vocab) * dim, 6, 0.1f));
  Backend& cpu = x.d.cpu();
  Backend& gpu = x.d.gpu();
  cpu.axpy(-0.37f, p.cpu, q.cpu, n);
  gpu.axpy(-0.37f, p.gpu, q.gpu, n);
  cpu.fill(f.cpu, 2.5f, 99);  // leaves the last two alone
  gpu.fill(f.gpu, 2.5f, 99);
  cpu.embedding_fwd(ids.cpu, table.cpu, out.cpu, rows, dim);
  gpu.embedding_fwd(ids.gpu, table.gpu, out.gpu, rows, dim);
  cpu.embedding_bwd(ids.cpu, dout.cpu, dtable.cpu, rows, dim);  // accumulates
  gpu.embedding_bwd(ids.gpu, dout.gpu, dtable.gpu, rows, dim);
  x.d.gpu().synchronize();
  x.expect_close("axpy", q, kBf16Out);
  x.expect_close("fill", f, Tol{0, 0});
  x.expect_close("embedding out", out, Tol{0, 0});
  x.expect_close("embedding dtable (fp32)", dtable, Tol{1e-5, 1e-5});
}

TEST(CudaBf16, RmsNormRopeSwiglu) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Bf16Dual x;
  const int rows = 37, dim = 67;
  const size_t nd = size_t(rows) * dim;
  auto in = x.put(randn(nd, 40, 2.f)), w = x.put(randn(dim, 41)), dy = x.put(randn(nd, 42));
  auto y = x.put(std::vector<float>(nd)), dx = x.put(std::vector<float>(nd));
  auto rstd = x.putf(std::vector<float>(rows)), dw = x.putf(randn(dim, 43, 0.5f));

  const int hd = 64, heads = 3, ld = heads * hd + 5;
  std::vector<int32_t> pos_host(rows);
  for (int i = 0; i < rows; ++i) pos_host[i] = (i * 977) % 8192;
  std::vector<float> inv_host(hd / 2);
  for (int i = 0; i < hd / 2; ++i) inv_host[i] = 1.f / std::pow(500000.f, 2.f * i / hd);
  auto pos = x.putf(pos_host);
  auto inv = x.putf(inv_host);
  auto r1 = x.put(randn(size_t(rows) * ld, 50)), r2 = x.put(randn(size_t(rows) * ld, 50));

  const int f = 67;
  auto gu = x.put(randn(size_t(rows) * 2 * f, 60, 2.f)), dout = x.put(randn(size_t(rows) * f, 61));
  auto act = x.put(std::vector<float>(size_t(rows) * f)), dgu = x.put(randn(size_t(rows) * 2 * f, 62));

  Backend& cpu = x.d.cpu();
  Backend& gpu = x.d.gpu();
  cpu.rmsnorm_fwd(in.cpu, w.cpu, y.cpu, rstd.cpu, rows, dim, 1e-5f);
  gpu.rmsnorm_fwd(in.gpu, w.gpu, y.gpu, rstd.gpu, rows, dim, 1e-5f);
  cpu.rmsnorm_bwd(dy.cpu, in.cpu, w.cpu, rstd.cpu, dx.cpu, dw.cpu, rows, dim);
  gpu.rmsnorm_bwd(dy.gpu, in.gpu, w.gpu, rstd.gpu, dx.gpu, dw.gpu, rows, dim);
  cpu.rope(r1.cpu, ld, pos.cpu, inv.cpu, rows, heads, hd, false);
  gpu.rope(r1.gpu, ld, pos.gpu, inv.gpu, rows, heads, hd, false);
  cpu.rope(r2.cpu, ld, pos.cpu, inv.cpu, rows, heads, hd, true);
  gpu.rope(r2.gpu, ld, pos.gpu, inv.gpu, rows, heads, hd, true);
  cpu.swiglu_fwd(gu.cpu, gu.cpu + f, 2 * f, act.cpu, rows, f);
  gpu.swiglu_fwd(gu.gpu, gu.gpu + f, 2 * f, act.gpu, rows, f);
  cpu.swiglu_bwd(dout.cpu, gu.cpu, gu.cpu + f, 2 * f, dgu.cpu, dgu.cpu + f, 2 * f, rows, f);
  gpu.swiglu_bwd(dout.gpu, gu.gpu, gu.gpu + f, 2 * f, dgu.gpu, dgu.gpu + f, 2 * f, rows, f);
  gpu.synchronize();
  x.expect_close("rmsnorm y", y, kBf16Out);
  x.expect_close("rmsnorm rstd (fp32)", rstd, Tol{1e-6, 1e-5});
  x.expect_close("rmsnorm dx", dx, Tol{1e-4, kHalfUlp});
  x.expect_close("rmsnorm dw (fp32)", dw, Tol{1e-4, 1e-4});
  x.expect_close("rope forward", r1, kBf16Out);
  x.expect_close("rope inverse", r2, kBf16Out);
  x.expect_close("swiglu out", act, kBf16Out);
  x.expect_close("swiglu dgate|dup", dgu, kBf16Out);
}

// bf16 attention: head_dim 64 and 128 run the tensor-core kernels
// (attention_tc.cu), 32 the SIMT ones. The CPU reference computes in fp32
// from the same bf16 inputs, and its backward starts from the GPU's (bf16)
// forward output so both differentiate the same function. The tensor-core
// kernels also round P and dS to bf16 for their products (as
// FlashAttention-2 does), so the tolerances are relative to each output's
// largest value. lse stays fp32.
struct Bf16AttnCase {
  int batch, tq, tk, hq, hkv, hd, q_offset;
  bool docs, fused;
  int pad = 0;  // extra columns per row of unfused q/k/v (an odd pad defeats the 16-byte staging)
};

class CudaBf16Attention : public ::testing::TestWithParam<Bf16AttnCase> {};

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::abs(x)));
  return m;
}

TEST_P(CudaBf16Attention, ForwardBackwardMatchCpu) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  const Bf16AttnCase c = GetParam();
  Bf16Dual x;
  const int qd = c.hq * c.hd, kvd = c.hkv * c.hd;
  AttnShape s = attn_shape(c.batch, c.tq, c.tk, c.hq, c.hkv, c.hd, c.q_offset);
  s.ldo = qd;
  size_t k_off = 0, v_off = 0, q_size, kv_size;
  if (c.fused) {
    s.ldq = s.ldk = s.ldv = qd + 2 * kvd;
    q_size = kv_size = size_t(c.batch) * c.tq * s.ldq;
    k_off = qd;
    v_off = qd + kvd;
  } else {
    s.ldq = qd + c.pad;
    s.ldk = s.ldv = kvd + c.pad;
    q_size = size_t(c.batch) * c.tq * s.ldq;
    kv_size = size_t(c.batch) * c.tk * s.ldk;
  }
  std::vector<int32_t> doc(size_t(c.batch) * c.tq, 0);
  for (int b = 0; b < c.batch; ++b)
    for (int t = 0; t < c.tq; ++t) {
      const int pos = c.q_offset + t, cut = c.tk / 2 + b;
      doc[size_t(b) * c.tq + t] = pos >= cut ? cut : 0;
    }
  if (c.q_offset > 0 && c.tq > 2) doc[1] = c.q_offset + 2;  // a query that sees no key at all
  auto docs = x.putf(doc);
  auto q = x.put(randn(q_size, 100, 2.f)), k = c.fused ? q : x.put(randn(kv_size, 101, 2.f));
  auto v = c.fused ? q : x.put(randn(kv_size, 102));
  // Gradients start as garbage: only the head columns may change.
  auto dq = x.put(randn(q_size, 103)), dk = c.fused ? dq : x.put(randn(kv_size, 104));
  auto dv = c.fused ? dq : x.put(randn(kv_size, 105));
  const size_t rows = size_t(c.batch) * c.tq;
  auto out = x.put(std::vector<float>(rows * qd)), dout = x.put(randn(rows * qd, 107));
  auto lse = x.putf(std::vector<float>(size_t(c.batch) * c.hq * c.tq));
  AttnShape sc = s, sg = s;
  sc.doc_start = c.docs ? docs.cpu : nullptr;
  sg.doc_start = c.docs ? docs.gpu : nullptr;
  x.d.cpu().attention_fwd(sc, q.cpu, k.cpu + k_off, v.cpu + v_off, out.cpu, lse.cpu);
  x.d.gpu().attention_fwd(sg, q.gpu, k.gpu + k_off, v.gpu + v_off, out.gpu, lse.gpu);
  const std::vector<float> o = x.gpu_values(out), o_ref = x.cpu_values(out);
  x.d.cpu().to_device(out.cpu, o.data(), o.size() * sizeof(float));
  x.d.cpu().attention_bwd(sc, q.cpu, k.cpu + k_off, v.cpu + v_off, out.cpu, lse.cpu, dout.cpu, dq.cpu,
                          dk.cpu + k_off, dv.cpu + v_off);
  x.d.gpu().attention_bwd(sg, q.gpu, k.gpu + k_off, v.gpu + v_off, out.gpu, lse.gpu, dout.gpu, dq.gpu,
                          dk.gpu + k_off, dv.gpu + v_off);
  x.d.gpu().synchronize();
  const double tol = 1e-2;  // worst seen in the emulator: 4.7e-3 (bf16 output rounding is up to 3.9e-3)
  cuda_test::expect_close("attention out", o, o_ref, Tol{tol * max_abs(o_ref), 0});
  x.expect_close("attention lse (fp32)", lse, Tol{1e-4, 1e-5});
  for (auto [name, buf] : {std::pair<const char*, B16>{"dq", dq}, {"dk", dk}, {"dv", dv}}) {
    if (c.fused && std::string(name) != "dq") continue;
    const std::vector<float> want = x.cpu_values(buf);
    cuda_test::expect_close(std::string("attention ") + (c.fused ? "dqkv" : name), x.gpu_values(buf), want,
                            Tol{tol * max_abs(want), 0});
  }
  // Bitwise deterministic: no atomics in the backward.
  const std::vector<float> dq1 = x.gpu_values(dq), dk1 = x.gpu_values(dk), dv1 = x.gpu_values(dv);
  x.d.gpu().attention_bwd(sg, q.gpu, k.gpu + k_off, v.gpu + v_off, out.gpu, lse.gpu, dout.gpu, dq.gpu,
                          dk.gpu + k_off, dv.gpu + v_off);
  EXPECT_EQ(x.gpu_values(dq), dq1);
  EXPECT_EQ(x.gpu_values(dk), dk1);
  EXPECT_EQ(x.gpu_values(dv), dv1);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaBf16Attention,
    ::testing::Values(
        // batch, tq, tk, hq, hkv, hd, q_offset, docs, fused
        Bf16AttnCase{2, 70, 70, 4, 2, 64, 0, true, true},     // tensor cores: fused QKV, GQA, docs, partial tile
        Bf16AttnCase{1, 130, 130, 2, 1, 128, 0, false, false}, // tensor cores, hd 128, three query tiles
        Bf16AttnCase{1, 9, 75, 4, 2, 64, 66, true, false, 3}, // chunked prefill over a cache, a fully masked row,
                                                               // padded rows (element-wise staging)
        Bf16AttnCase{1, 1, 77, 2, 2, 128, 76, false, false, 8}, // decode one token
        Bf16AttnCase{1, 70, 80, 2, 1, 64, 0, false, false},   // trailing keys nobody sees get zero gradients
        Bf16AttnCase{2, 37, 37, 4, 1, 32, 0, true, false}),   // hd 32: the SIMT kernels in bf16
    [](const ::testing::TestParamInfo<Bf16AttnCase>& info) {
      const Bf16AttnCase& c = info.param;
      return "tq" + std::to_string(c.tq) + "_tk" + std::to_string(c.tk) + "_hd" + std::to_string(c.hd) + "_off" +
             std::to_string(c.q_offset) + (c.docs ? "_docs" : "") + (c.fused ? "_fused" : "") + "_pad" + std::to_string(c.pad);
    });

// Loss in fp32 from bf16 logits; the gradient overwrites the logits in bf16.
TEST(CudaBf16, CrossEntropyAndDropout) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Bf16Dual x;
  const int vocab = 32007;
  const std::vector<int32_t> labels_host = {32006, 0, 8191, 8192, -100, 20000};
  const int rows = int(labels_host.size());
  auto logits = x.put(randn(size_t(rows) * vocab, 70, 4.f));
  auto labels = x.putf(labels_host);
  auto loss = x.putf(std::vector<float>(rows, -1.f));
  x.d.cpu().cross_entropy_rows(logits.cpu, labels.cpu, loss.cpu, rows, vocab, 0.125f);
  x.d.gpu().cross_entropy_rows(logits.gpu, labels.gpu, loss.gpu, rows, vocab, 0.125f);
  const int dr = 45, dc = 77, seq = 15;
  const std::vector<uint64_t> keys = {11, 22, 33};
  auto din = x.put(randn(size_t(dr) * dc, 92)), dropped = x.put(std::vector<float>(size_t(dr) * dc));
  x.d.cpu().dropout(din.cpu, dropped.cpu, dr, dc, seq, keys.data(), 5, 0.3f);
  x.d.gpu().dropout(din.gpu, dropped.gpu, dr, dc, seq, keys.data(), 5, 0.3f);
  x.d.gpu().synchronize();
  x.expect_close("cross-entropy loss (fp32)", loss, Tol{1e-5, 1e-5});
  x.expect_close("cross-entropy gradient", logits, Tol{1e-9, kHalfUlp});
  x.expect_close("dropout", dropped, kBf16Out);
}

// bf16 gathers kept bf16 (exact), and quantized units dequantized straight to
// bf16: the fp32 dequantization rounded once, so exactly the CPU's value rounded.
TEST(CudaBf16, UnpackAndDequantizeAreExact) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  Dual d;
  const size_t n = 1001, words = (n + 1) / 2;
  auto src = d.put(randn(3 * n, 93, 5.f));
  auto packed = d.put(std::vector<float>(3 * words, 0.f)), wide = d.put(std::vector<float>(3 * n));
  bf16* narrow = static_cast<bf16*>(d.gpu().alloc_bytes(3 * n * sizeof(bf16)));
  d.run([&](Backend& be, bool g) {
    for (int r = 0; r < 3; ++r) be.pack_bf16(src.on(g) + r * n, packed.on(g) + r * words, n);
    be.unpack_bf16(packed.on(g), words, wide.on(g), n, 3);
  });
  d.gpu().unpack_bf16(packed.gpu, words, narrow, n, 3);
  std::vector<bf16> got(3 * n);
  d.gpu().to_host(got.data(), narrow, got.size() * sizeof(bf16));
  const std::vector<float> want = d.cpu_values(wide);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(static_cast<float>(got[i]), want[i]) << i;

  const Unit unit = make_unit(
      {{"input_layernorm.weight", {40}}, {"self_attn.q_proj.weight", {300, 70}}, {"mlp.down_proj.weight", {33, 64}}});
  const std::vector<float> w = randn(size_t(unit.numel), 91, 0.05f);
  const quant::UnitCodec codec(unit, quant::Kind::kNf4, 1);
  std::vector<float> region(size_t(codec.shard_words()));
  codec.quantize_region(
      0, region.data(),
      [&](int slot, int64_t elem, int64_t count, float* dst) {
        const int64_t at = unit.tensors[slot].offset + elem;
        std::copy(w.begin() + at, w.begin() + at + count, dst);
      },
      [](double*, size_t) {});
  auto in = d.put(region), deq = d.put(std::vector<float>(size_t(unit.numel)));
  bf16* deq16 = static_cast<bf16*>(d.gpu().alloc_bytes(size_t(unit.numel) * sizeof(bf16)));
  d.cpu().dequantize_unit(codec, in.cpu, deq.cpu);
  d.gpu().dequantize_unit(codec, in.gpu, deq16);
  std::vector<bf16> got16(size_t(unit.numel));
  d.gpu().to_host(got16.data(), deq16, got16.size() * sizeof(bf16));
  const std::vector<float> ref = rounded(d.cpu_values(deq));
  for (size_t i = 0; i < got16.size(); ++i) ASSERT_EQ(static_cast<float>(got16[i]), ref[i]) << i;
  d.gpu().free_bytes(narrow);
  d.gpu().free_bytes(deq16);
}

}  // namespace
}  // namespace llamaft::cuda_test
