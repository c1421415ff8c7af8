// CUDA attention forward and backward against the CPU backend: head dims on
// every kernel instantiation (8 and 48 padded, 32, 64, 128, 200 on the 256
// kernel), GQA ratios 1 and 4, q_offset > 0 (decode and chunked prefill over
// a KV cache), doc_start masks including a row that sees nothing, batch > 1,
// and the model's fused QKV layout, where dq/dk/dv must overwrite their head
// columns and leave the padding columns alone. Also checks the backward is
// bitwise deterministic. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "cuda_test_util.hpp"

namespace llamaft {
namespace {

using cuda_test::Dual;
using cuda_test::randn;
using cuda_test::Tol;

struct AttnCase {
  int batch, tq, tk, hq, hkv, hd, q_offset;
  bool docs;   // packed documents: doc_start masks
  bool fused;  // q, k, v as column slices of one (B*T, ld) buffer (needs tq == tk)
};

std::string case_name(const ::testing::TestParamInfo<AttnCase>& info) {
  const AttnCase& c = info.param;
  return "b" + std::to_string(c.batch) + "_tq" + std::to_string(c.tq) + "_tk" + std::to_string(c.tk) + "_h" +
         std::to_string(c.hq) + "kv" + std::to_string(c.hkv) + "_hd" + std::to_string(c.hd) + "_off" +
         std::to_string(c.q_offset) + (c.docs ? "_docs" : "") + (c.fused ? "_fused" : "");
}

// doc_start(B*Tq): documents start at keys 0, tk/3 and 2tk/3 (shifted per batch row); with
// q_offset > 0 one query is given a start past its own position, so it sees no key at all.
std::vector<int32_t> make_doc_start(const AttnCase& c) {
  std::vector<int32_t> doc(size_t(c.batch) * c.tq, 0);
  for (int b = 0; b < c.batch; ++b)
    for (int t = 0; t < c.tq; ++t) {
      const int pos = c.q_offset + t;
      const int cut1 = c.tk / 3 + b, cut2 = 2 * c.tk / 3 + b;
      doc[size_t(b) * c.tq + t] = pos >= cut2 ? cut2 : pos >= cut1 ? cut1 : 0;
    }
  if (c.q_offset > 0 && c.tq > 2) doc[1] = c.q_offset + 2;  // query 1 (position q_offset+1) is fully masked
  return doc;
}

class CudaAttention : public ::testing::TestWithParam<AttnCase> {};

TEST_P(CudaAttention, ForwardBackwardMatchCpu) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  const AttnCase c = GetParam();
  ASSERT_TRUE(!c.fused || c.tq == c.tk);
  Dual d;
  const int qd = c.hq * c.hd, kvd = c.hkv * c.hd, pad = 3;

  AttnShape s = cuda_test::attn_shape(c.batch, c.tq, c.tk, c.hq, c.hkv, c.hd, c.q_offset);
  s.ldo = qd + (c.fused ? 0 : pad);
  size_t q_off = 0, k_off = 0, v_off = 0, q_size, kv_size;
  if (c.fused) {  // one (B*T, qd + 2 kvd + pad) buffer, as the model's qkv and dqkv
    s.ldq = s.ldk = s.ldv = qd + 2 * kvd + pad;
    q_size = kv_size = size_t(c.batch) * c.tq * s.ldq;
    k_off = qd;
    v_off = qd + kvd;
  } else {
    s.ldq = qd + pad;
    s.ldk = s.ldv = kvd + pad;
    q_size = size_t(c.batch) * c.tq * s.ldq;
    kv_size = size_t(c.batch) * c.tk * s.ldk;
  }
  auto q = d.put(randn(q_size, 100)), k = c.fused ? q : d.put(randn(kv_size, 101));
  auto v = c.fused ? q : d.put(randn(kv_size, 102));
  // Gradients start as garbage: the head columns must be overwritten, the rest kept.
  auto dq = d.put(randn(q_size, 103)), dk = c.fused ? dq : d.put(randn(kv_size, 104));
  auto dv = c.fused ? dq : d.put(randn(kv_size, 105));
  auto out = d.put(randn(size_t(c.batch) * c.tq * s.ldo, 106)), dout = d.put(randn(out.n, 107));
  auto lse = d.put(std::vector<float>(size_t(c.batch) * c.hq * c.tq, 0.f));
  auto doc = d.put(make_doc_start(c));

  d.run([&](Backend& be, bool g) {
    AttnShape sg = s;
    sg.doc_start = c.docs ? doc.on(g) : nullptr;
    be.attention_fwd(sg, q.on(g) + q_off, k.on(g) + k_off, v.on(g) + v_off, out.on(g), lse.on(g));
    be.attention_bwd(sg, q.on(g) + q_off, k.on(g) + k_off, v.on(g) + v_off, out.on(g), lse.on(g), dout.on(g),
                     dq.on(g) + q_off, dk.on(g) + k_off, dv.on(g) + v_off);
  });
  d.expect_close("attention out", out, Tol{2e-5, 2e-4});
  d.expect_close("attention lse", lse, Tol{1e-5, 1e-5});
  d.expect_close(c.fused ? "attention dqkv" : "attention dq", dq, Tol{1e-4, 1e-3});
  if (!c.fused) {
    d.expect_close("attention dk", dk, Tol{1e-4, 1e-3});
    d.expect_close("attention dv", dv, Tol{1e-4, 1e-3});
  }

  // Bitwise deterministic: no atomics anywhere in the backward.
  const std::vector<float> dq1 = d.gpu_values(dq), dk1 = d.gpu_values(dk), dv1 = d.gpu_values(dv);
  AttnShape sg = s;
  sg.doc_start = c.docs ? doc.gpu : nullptr;
  d.gpu().attention_bwd(sg, q.gpu + q_off, k.gpu + k_off, v.gpu + v_off, out.gpu, lse.gpu, dout.gpu, dq.gpu + q_off,
                        dk.gpu + k_off, dv.gpu + v_off);
  EXPECT_EQ(d.gpu_values(dq), dq1);
  EXPECT_EQ(d.gpu_values(dk), dk1);
  EXPECT_EQ(d.gpu_values(dv), dv1);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaAttention,
    ::testing::Values(
        // batch, tq, tk, hq, hkv, hd, q_offset, docs, fused
        AttnCase{2, 37, 37, 4, 1, 32, 0, false, false},    // GQA 4, two query tiles
        AttnCase{1, 70, 70, 4, 4, 64, 0, true, true},      // MHA, packed docs, fused QKV
        AttnCase{2, 129, 129, 8, 2, 128, 0, true, true},   // GQA 4, hd 128, docs, batch 2
        AttnCase{1, 1, 77, 4, 4, 128, 76, false, false},   // decode one token against a KV cache
        AttnCase{1, 9, 45, 8, 2, 64, 36, false, false},    // chunked prefill, q_offset > 0
        AttnCase{1, 6, 40, 4, 2, 32, 34, true, false},     // q_offset > 0 with docs and a fully masked row
        AttnCase{1, 37, 37, 2, 1, 8, 0, true, false},      // hd 8 (stories260K) on the 32 kernel
        AttnCase{1, 33, 33, 2, 2, 48, 0, false, true},     // hd 48 on the 64 kernel
        AttnCase{2, 20, 20, 2, 1, 200, 0, false, false},   // hd 200 on the 256 kernel
        AttnCase{1, 70, 80, 2, 1, 64, 0, false, false}),   // tk > q_offset + tq: trailing keys get zero grads
    case_name);

}  // namespace
}  // namespace llamaft
