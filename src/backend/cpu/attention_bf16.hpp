// bf16 attention on the bf16 GEMMs (oneDNN: AVX512-BF16, AMX where present),
// for the head dims whose P and dS the GPU's tensor-core kernels round to
// bf16 (64 and 128). Q K^T, dO V^T, P V, dS K, dS^T Q and P^T dO multiply bf16
// operands, exactly, with fp32 accumulation; softmax, D = rowsum(dO * O) and
// dS are fp32; P and dS are rounded to bf16 before their products; O and
// dQ are rounded once, and dK and dV accumulate in fp32 over the heads of a
// group and the query blocks and are rounded once. That is what the
// widened path (cpu_backend.cpp: widen, fp32 SGEMMs, round) computes, in
// another order of the fp32 additions, without widening Q, K, V, O and dO
// or running the products as fp32 SGEMMs (on this path they were 20% of a
// 110M bf16 step at 3% of the bf16 GEMM peak).
#pragma once

#include "backend/attn_shape.hpp"
#include "backend/cpu/gemm_bf16.hpp"
#include "core/dtype.hpp"

namespace llamaft::cpu {

// Whether attention_{fwd,bwd}_bf16_gemms serve this call: head dim 64 or
// 128, the oneDNN path, and query blocks large enough to be worth a GEMM.
bool attention_bf16_gemms_apply(const AttnShape& s, Bf16GemmPath path);

// out(B*Tq, ldo) rounded to bf16, lse(B, n_heads, Tq) in fp32.
void attention_fwd_bf16_gemms(Bf16GemmPath path, GemmImpl impl, const AttnShape& s, const bf16* q, const bf16* k,
                              const bf16* v, bf16* out, float* lse);
// dq, dk, dv overwritten (same strides as q, k, v), rounded to bf16.
void attention_bwd_bf16_gemms(Bf16GemmPath path, GemmImpl impl, const AttnShape& s, const bf16* q, const bf16* k,
                              const bf16* v, const bf16* out, const float* lse, const bf16* dout, bf16* dq,
                              bf16* dk, bf16* dv);

}  // namespace llamaft::cpu
