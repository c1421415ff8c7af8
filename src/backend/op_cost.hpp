// What one backend op must move and compute, from its arguments alone: the
// ideal traffic (each operand read, each result written, once) and the
// FLOPs of the GEMM-like ops. The CUDA backend's step counters and the CPU
// profile (train.profile) count with these, so the two report alike.
#pragma once

#include <algorithm>

#include "backend/attn_shape.hpp"

namespace llamaft::op_cost {

// C(M,N) = op(A)(M,K) op(B)(K,N) (+ beta C): A and B read, C written (and read when beta != 0).
inline double gemm_bytes(int m, int n, int k, double in_elem, double out_elem, bool reads_c) {
  return (double(m) * k + double(k) * n) * in_elem + double(m) * n * out_elem * (reads_c ? 2 : 1);
}
inline double gemm_flops(int m, int n, int k) { return 2.0 * m * n * k; }

// Query-key pairs a causal (or offset) attention visits: query i sees keys
// [0, min(tk, q_offset + i + 1)).
inline double causal_pairs(const AttnShape& s) {
  const int full_from = std::max(0, s.tk - s.q_offset - 1);  // queries from here on see all tk keys
  const int partial = std::min(s.tq, full_from);              // query i < partial sees q_offset + i + 1
  return double(partial) * (s.q_offset + 1) + double(partial) * (partial - 1) / 2 + double(s.tq - partial) * s.tk;
}
inline double attention_io_bytes(const AttnShape& s, double elem) {
  const double q = double(s.batch) * s.tq * s.n_heads * s.head_dim;
  const double kv = double(s.batch) * s.tk * s.n_kv_heads * s.head_dim;
  return (2 * q + 2 * kv) * elem + 4.0 * s.batch * s.n_heads * s.tq;  // q, k, v, out, lse
}
// Backward: the forward's tensors and dO read, dQ, dK and dV written.
inline double attention_bwd_io_bytes(const AttnShape& s, double elem) {
  return attention_io_bytes(s, elem) +
         (2.0 * s.batch * s.tq * s.n_heads + 2.0 * s.batch * s.tk * s.n_kv_heads) * s.head_dim * elem;
}
// S = Q K^T and O = P V: 4 * head_dim FLOPs a visited pair, per head.
inline double attention_fwd_flops(const AttnShape& s) {
  return 4.0 * s.batch * s.n_heads * s.head_dim * causal_pairs(s);
}
// FlashAttention-2's backward: S recomputed, dV, dP, dQ and dK: 2.5 times the forward.
inline double attention_bwd_flops(const AttnShape& s) { return 2.5 * attention_fwd_flops(s); }

}  // namespace llamaft::op_cost
