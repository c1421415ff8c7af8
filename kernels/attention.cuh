// Causal grouped-query attention, flash-attention style: tiles of queries
// against tiles of keys in shared memory with an online softmax, so no T x T
// matrix is ever materialised. Semantics are backend/attn_shape.hpp's AttnShape: query t
// sits at position q_offset + t and sees keys [doc_start or 0, q_offset+t].
//
// attention.cu: SIMT kernels computing in fp32 (128 threads, register
// micro-tiles, padded shared rows so the inner loops are bank-conflict free),
// one instantiation per padded head dim (32, 64, 128, 256; a head_dim of 48
// runs the 64 kernel with zero padding), for fp32 and bf16 storage.
// attention_tc.cu: bf16 with head_dim 64 or 128 on the tensor cores (below).
// Forward writes out and lse = log-sum-exp of the scaled scores (B, H, Tq).
// Backward recomputes P from lse (FlashAttention-2): a small kernel forms
// D = rowsum(dO * O), one kernel per key tile accumulates dK and dV over every
// query head of its group and every query tile (so GQA needs no atomics and
// dK/dV are written, not added), and one kernel per query tile forms dQ.
// Everything is deterministic.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "backend/attn_shape.hpp"
#include "core/dtype.hpp"

namespace llamaft::cuda {

constexpr int kAttentionMaxHeadDim = 256;

// q (B*Tq, ldq), k (B*Tk, ldk), v (B*Tk, ldv) -> out (B*Tq, ldo), lse (B, n_heads, Tq)
template <typename T>
void attention_fwd(const AttnShape& s, const T* q, const T* k, const T* v, T* out, float* lse, cudaStream_t stream);

// Floats of workspace attention_bwd needs: D, (B, n_heads, Tq).
size_t attention_bwd_workspace_floats(const AttnShape& s);

// dout has the layout of out (ldo). dq, dk, dv (strides ldq, ldk, ldv) are
// overwritten in their head columns only; other columns of those rows (e.g.
// the neighbouring parts of a fused QKV gradient) are left alone.
template <typename T>
void attention_bwd(const AttnShape& s, const T* q, const T* k, const T* v, const T* out, const float* lse,
                   const T* dout, T* dq, T* dk, T* dv, float* workspace, cudaStream_t stream);

// bf16 on the tensor cores (attention_tc.cu: FlashAttention-2 with WMMA
// bf16 tiles and fp32 accumulation) for head_dim 64 and 128; attention_fwd
// and attention_bwd for T = bf16 dispatch there, other head dims and fp32
// run the SIMT kernels. dsum: D = rowsum(dO * O), (B, n_heads, Tq).
bool attention_tc_supported(int head_dim);
void attention_fwd_tc(const AttnShape& s, const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse,
                      cudaStream_t stream);
void attention_bwd_tc(const AttnShape& s, const bf16* q, const bf16* k, const bf16* v, const float* lse,
                      const float* dsum, const bf16* dout, bf16* dq, bf16* dk, bf16* dv, cudaStream_t stream);

}  // namespace llamaft::cuda
