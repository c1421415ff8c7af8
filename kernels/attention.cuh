// Causal grouped-query attention, flash-attention style: tiles of queries
// against tiles of keys in shared memory with an online softmax, so no T x T
// matrix is ever materialised. Semantics are backend.hpp's AttnShape: query t
// sits at position q_offset + t and sees keys [doc_start or 0, q_offset+t].
//
// fp32 SIMT kernels (128 threads, register micro-tiles, padded shared rows so
// the inner loops are bank-conflict free), one instantiation per padded head
// dim (32, 64, 128, 256; a head_dim of 48 runs the 64 kernel with zero padding).
// Forward writes out and lse = log-sum-exp of the scaled scores (B, H, Tq).
// Backward recomputes P from lse (FlashAttention-2): a small kernel forms
// D = rowsum(dO * O), one kernel per key tile accumulates dK and dV over every
// query head of its group and every query tile (so GQA needs no atomics and
// dK/dV are written, not added), and one kernel per query tile forms dQ.
// Everything is deterministic.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "backend/backend.hpp"

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

}  // namespace llamaft::cuda
