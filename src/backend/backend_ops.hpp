// The backend's op table: every compute op, declared once. Each line gives
//   X(ret, name, cuda_family, profile_family, (params), (args), bytes, flops)
// - ret name params: the op's signature. In LLAMAFT_STORAGE_OPS, S is the
//   storage type, and the table is instantiated for S = float and S = bf16:
//   both overloads come from the one line.
// - cuda_family: the CUDA backend's step-counter family (StepCounters::ops),
//   or nullptr when its implementation counts itself (the GEMMs, whose
//   library calls it adds; the embedding backward, whose bytes depend on the
//   distinct ids; the reductions and pack_bf16, which make library calls).
// - profile_family: the family train.profile times the op under.
// - bytes, flops: what the op moves and computes, from its arguments alone
//   (backend/op_cost.hpp for the formulas longer than a line). The CUDA
//   counters and the CPU profile both count with these.
//
// From this table come Backend's pure virtual declarations (backend.hpp),
// the counting backend's no-ops, the profiling backend's timed forwards, and
// each real backend's overrides, which call `name_t(args...)`: the one body
// a backend writes, a template over S for the storage ops. Adding an op is
// listed in docs/adding_an_op.md.
//
// The shapes are in each line's comment; matrices are row-major (rows, cols).
#pragma once

#include "backend/op_cost.hpp"

// clang-format off
#define LLAMAFT_STORAGE_OPS(X, S)                                                                                   \
  /* p(n) = value */                                                                                                \
  X(void, fill, "fill", "fill_axpy_scale", (S* p, float value, size_t n), (p, value, n), sizeof(S) * double(n), 0) \
  /* C(M,N) = alpha * op(A)(M,K) * op(B)(K,N) + beta * C */                                                         \
  X(void, gemm, nullptr, sizeof(S) == 4 ? "gemm_f32" : "gemm_bf16",                                                 \
    (bool trans_a, bool trans_b, int m, int n, int k, float alpha, const S* a, int lda, const S* b, int ldb,         \
     float beta, S* c, int ldc),                                                                                    \
    (trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc),                                               \
    op_cost::gemm_bytes(m, n, k, sizeof(S), sizeof(S), beta != 0.f), op_cost::gemm_flops(m, n, k))                  \
  /* y(n) += alpha * x(n) */                                                                                        \
  X(void, axpy, "axpy", "fill_axpy_scale", (float alpha, const S* x, S* y, size_t n), (alpha, x, y, n),             \
    3.0 * sizeof(S) * n, 0)                                                                                         \
  /* out(n, dim) = table[ids[i]] */                                                                                 \
  X(void, embedding_fwd, "embedding_fwd", "embedding", (const int32_t* ids, const S* table, S* out, int n, int dim), \
    (ids, table, out, n, dim), 2.0 * sizeof(S) * n * dim + 4.0 * n, 0)                                              \
  /* dtable[ids[i]] += dout[i]; the table gradient is fp32 */                                                       \
  X(void, embedding_bwd, nullptr, "embedding", (const int32_t* ids, const S* dout, float* dtable, int n, int dim),  \
    (ids, dout, dtable, n, dim), (sizeof(S) + 8.0) * n * dim + 4.0 * n, 0)                                          \
  /* y(rows, dim), rstd(rows) */                                                                                    \
  X(void, rmsnorm_fwd, "rmsnorm_fwd", "rmsnorm",                                                                    \
    (const S* x, const S* w, S* y, float* rstd, int rows, int dim, float eps), (x, w, y, rstd, rows, dim, eps),      \
    sizeof(S) * 2.0 * rows * dim + sizeof(S) * double(dim) + 4.0 * rows, 0)                                          \
  /* dx(rows, dim) overwritten, dw(dim) accumulated (fp32; may be null) */                                           \
  X(void, rmsnorm_bwd, "rmsnorm_bwd", "rmsnorm",                                                                    \
    (const S* dy, const S* x, const S* w, const float* rstd, S* dx, float* dw, int rows, int dim),                 \
    (dy, x, w, rstd, dx, dw, rows, dim),                                                                            \
    sizeof(S) * 3.0 * rows * dim + sizeof(S) * double(dim) + 4.0 * rows + (dw ? 8.0 * dim : 0.0), 0)                 \
  /* In-place rotation of n_heads heads in each of `rows` rows of stride ld. positions(rows);                       \
     inv_freq(head_dim/2). inverse=true rotates by -angle (the backward pass). */                                   \
  X(void, rope, "rope", "rope",                                                                                     \
    (S* x, int ld, const int32_t* positions, const float* inv_freq, int rows, int n_heads, int head_dim,           \
     bool inverse),                                                                                                 \
    (x, ld, positions, inv_freq, rows, n_heads, head_dim, inverse),                                                 \
    sizeof(S) * 2.0 * rows * n_heads * head_dim + 4.0 * rows, 0)                                                    \
  /* out(rows, n) = silu(gate) * up, gate/up with row stride ld_in */                                               \
  X(void, swiglu_fwd, "swiglu_fwd", "swiglu", (const S* gate, const S* up, int ld_in, S* out, int rows, int n),    \
    (gate, up, ld_in, out, rows, n), sizeof(S) * 3.0 * rows * n, 0)                                                 \
  /* dgate, dup (rows, n) with row stride ld_dgrad */                                                               \
  X(void, swiglu_bwd, "swiglu_bwd", "swiglu",                                                                       \
    (const S* dout, const S* gate, const S* up, int ld_in, S* dgate, S* dup, int ld_dgrad, int rows, int n),        \
    (dout, gate, up, ld_in, dgate, dup, ld_dgrad, rows, n), sizeof(S) * 5.0 * rows * n, 0)                          \
  /* out(B*Tq, ldo), lse(B, n_heads, Tq) */                                                                         \
  X(void, attention_fwd, "attention_fwd", "attention",                                                              \
    (const AttnShape& s, const S* q, const S* k, const S* v, S* out, float* lse), (s, q, k, v, out, lse),           \
    op_cost::attention_io_bytes(s, sizeof(S)), op_cost::attention_fwd_flops(s))                                     \
  /* dq, dk, dv overwritten (same strides as q, k, v) */                                                            \
  X(void, attention_bwd, "attention_bwd", "attention",                                                              \
    (const AttnShape& s, const S* q, const S* k, const S* v, const S* out, const float* lse, const S* dout, S* dq,  \
     S* dk, S* dv),                                                                                                 \
    (s, q, k, v, out, lse, dout, dq, dk, dv), op_cost::attention_bwd_io_bytes(s, sizeof(S)),                        \
    op_cost::attention_bwd_flops(s))                                                                                \
  /* For each row r with labels[r] != -100: loss[r] = lse(logits[r]) - logits[r][labels[r]] and logits[r] is       \
     replaced by the gradient of scale * loss[r]; ignored rows get loss 0 and a zero gradient. */                   \
  X(void, cross_entropy_rows, "cross_entropy", "loss_head_softmax",                                                 \
    (S* logits, const int32_t* labels, float* loss, int rows, int vocab, float scale),                              \
    (logits, labels, loss, rows, vocab, scale), sizeof(S) * 2.0 * rows * vocab + 8.0 * rows, 0)                     \
  /* out(rows, cols) = x * dropout mask (inverted dropout with probability p; out may equal x). Row r is keyed      \
     row_keys[r / seq] (host memory, one per sequence) and element c by (r % seq) * cols + c, with                 \
     rowmath::dropout_factor. */                                                                                    \
  X(void, dropout, "dropout", "dropout",                                                                            \
    (const S* x, S* out, int rows, int cols, int seq, const uint64_t* row_keys, uint64_t salt, float p),           \
    (x, out, rows, cols, seq, row_keys, salt, p), sizeof(S) * 2.0 * rows * cols, 0)                                 \
  /* out[r * n + j] = bf16 element j of words + r * stride_words, for r < rows, j < n */                            \
  X(void, unpack_bf16, "unpack_bf16", "casts", (const float* words, size_t stride_words, S* out, size_t n, int rows), \
    (words, stride_words, out, n, rows), (2.0 + sizeof(S)) * n * rows, 0)                                           \
  /* out(codec.numel()) = the dequantized unit from its gathered regions (codec.shards() * codec.shard_words()     \
     words) */                                                                                                      \
  X(void, dequantize_unit, "dequantize", "dequantize", (const quant::UnitCodec& codec, const float* regions, S* out), \
    (codec, regions, out), 4.0 * codec.shards() * codec.shard_words() + double(sizeof(S)) * codec.numel(), 0)

// The ops with one signature: fp32 statistics and optimizer steps, the bf16
// packing of fp32 parameters, and the GEMM with bf16 operands and an fp32 C
// (weight gradients, accumulated with beta = 1; logits).
#define LLAMAFT_SINGLE_OPS(X)                                                                                      \
  X(void, gemm, nullptr, "gemm_bf16_f32out",                                                                        \
    (bool trans_a, bool trans_b, int m, int n, int k, float alpha, const bf16* a, int lda, const bf16* b, int ldb,   \
     float beta, float* c, int ldc),                                                                                \
    (trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc),                                               \
    op_cost::gemm_bytes(m, n, k, 2, 4, beta != 0.f), op_cost::gemm_flops(m, n, k))                                  \
  /* the sum of x(n) in double (loss reductions) */                                                                 \
  X(double, sum, nullptr, "sums", (const float* x, size_t n), (x, n), 4.0 * n, 0)                                   \
  /* the sum of squares of x(n) in double (gradient norms) */                                                       \
  X(double, sum_squares, nullptr, "sums", (const float* x, size_t n), (x, n), 4.0 * n, 0)                           \
  X(void, scale, "scale", "fill_axpy_scale", (float* x, float alpha, size_t n), (x, alpha, n), 8.0 * n, 0)          \
  /* One AdamW step over n elements (rowmath::adamw_elem on each). */                                               \
  X(void, adamw, "adamw", "adamw", (float* p, float* m, float* v, const float* g, size_t n, const rowmath::AdamWParams& a), \
    (p, m, v, g, n, a), 28.0 * n, 0)                                                                                \
  /* words(ceil(n / 2) float-sized words) = x(n) rounded to bf16 (nearest even), two per word, element 0 in the    \
     low half. */                                                                                                   \
  X(void, pack_bf16, nullptr, "casts", (const float* x, float* words, size_t n), (x, words, n), 6.0 * n, 0)

// Every op: both storage instantiations and the single-signature ops.
#define LLAMAFT_BACKEND_OPS(X) LLAMAFT_STORAGE_OPS(X, float) LLAMAFT_STORAGE_OPS(X, bf16) LLAMAFT_SINGLE_OPS(X)
// clang-format on

// Declarations for the table's lines, for Backend and the backends' classes.
#define LLAMAFT_OP_PURE(ret, name, cuda_family, profile_family, params, args, bytes, flops) virtual ret name params = 0;
#define LLAMAFT_OP_OVERRIDE(ret, name, cuda_family, profile_family, params, args, bytes, flops) ret name params override;
