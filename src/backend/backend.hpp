// The compute interface the model is written against. One implementation per
// device family: cpu/ (the reference that every test runs, in fp32 and in
// bf16) and cuda/.
// All pointers are in the backend's memory space (host for CPU, device for
// CUDA). Matrices are row-major; shapes are noted as (rows, cols).
// No CUDA headers here: model/, parallel/ and optim/ compile with plain g++.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "backend/attn_shape.hpp"
#include "backend/row_math.hpp"
#include "backend/step_counters.hpp"
#include "core/dtype.hpp"

namespace llamaft {

namespace quant {
class UnitCodec;
struct DequantItem;
}

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory ----------------------------------------------------------------
  virtual void* alloc_bytes(size_t bytes) = 0;
  virtual void free_bytes(void* p) = 0;
  virtual void to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill(float* p, float value, size_t n) = 0;
  virtual void synchronize() {}
  // The stream this backend queues its work on (a cudaStream_t for CUDA), or
  // nullptr when it computes synchronously on the host. The communicator
  // registry (comm/registry.hpp) runs NCCL on it.
  virtual void* native_stream() const { return nullptr; }
  // The device's ordinal among those this process sees; -1 on the host.
  virtual int device_ordinal() const { return -1; }
  // Whether device pointers are host memory the CPU may read and write
  // directly (the CPU backend): checkpoints then write from and read into
  // the shards themselves, with no host staging copy.
  virtual bool host_resident() const { return false; }
  // to_device for a buffer the backend may later need on the host (token
  // ids): a device backend keeps this host copy, so reading it back needs no
  // host synchronization. The default is to_device.
  virtual void to_device_mirrored(void* dst, const void* src, size_t bytes) { to_device(dst, src, bytes); }
  // What this backend did since the last counters()->clear() (a device
  // backend's StepCounters), or null when it does not count.
  virtual StepCounters* counters() { return nullptr; }
  // Bytes allocated through alloc_bytes: now, and the high-water mark.
  size_t live_bytes() const { return live_bytes_; }
  size_t peak_bytes() const { return peak_bytes_; }
  // Puts the high-water mark back to `mark` (at least what is live): for a
  // measurement whose scratch memory must not count as the run's (train/mfu).
  void restore_peak_bytes(size_t mark) { peak_bytes_ = mark > live_bytes_ ? mark : live_bytes_; }

  // ---- dense math -------------------------------------------------------------
  // C(M,N) = alpha * op(A)(M,K) * op(B)(K,N) + beta * C
  virtual void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                    const float* a, int lda, const float* b, int ldb, float beta, float* c,
                    int ldc) = 0;
  // y += alpha * x
  virtual void axpy(float alpha, const float* x, float* y, size_t n) = 0;
  // sum of x in double (loss reductions)
  virtual double sum(const float* x, size_t n) = 0;
  // sum of squares in double (gradient norms)
  virtual double sum_squares(const float* x, size_t n) = 0;
  virtual void scale(float* x, float alpha, size_t n) = 0;
  // One AdamW step over n elements (rowmath::adamw_elem on each).
  virtual void adamw(float* p, float* m, float* v, const float* g, size_t n,
                     const rowmath::AdamWParams& a) = 0;

  // The optimizer step over every trainable shard at once. The defaults loop
  // over the single-buffer ops; a device batches them (one host round trip
  // for the norm, multi-tensor AdamW launches). The norm adds the per-buffer
  // sums in order, so it is the same number either way.
  struct AdamWShard {
    float* p;
    float* m;
    float* v;
    const float* g;
    size_t n;
  };
  virtual double sum_squares_many(const float* const* xs, const size_t* ns, int count);
  virtual void adamw_many(const AdamWShard* shards, int count, const rowmath::AdamWParams& a);

  // ---- model ops --------------------------------------------------------------
  // out(n, dim) = table[ids[i]]
  virtual void embedding_fwd(const int32_t* ids, const float* table, float* out, int n,
                             int dim) = 0;
  // dtable[ids[i]] += dout[i]
  virtual void embedding_bwd(const int32_t* ids, const float* dout, float* dtable, int n,
                             int dim) = 0;
  // y(rows, dim), rstd(rows)
  virtual void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int rows,
                           int dim, float eps) = 0;
  // dx overwritten, dw accumulated
  virtual void rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd,
                           float* dx, float* dw, int rows, int dim) = 0;
  // In-place rotation of n_heads heads in each of `rows` rows of stride ld.
  // positions(rows); inv_freq(head_dim/2). inverse=true rotates by -angle
  // (the backward pass).
  virtual void rope(float* x, int ld, const int32_t* positions, const float* inv_freq, int rows,
                    int n_heads, int head_dim, bool inverse) = 0;
  // out(rows, n) = silu(gate) * up, gate/up with row stride ld_in
  virtual void swiglu_fwd(const float* gate, const float* up, int ld_in, float* out, int rows,
                          int n) = 0;
  virtual void swiglu_bwd(const float* dout, const float* gate, const float* up, int ld_in,
                          float* dgate, float* dup, int ld_dgrad, int rows, int n) = 0;
  // out(B*Tq, ldo), lse(B, n_heads, Tq)
  virtual void attention_fwd(const AttnShape& s, const float* q, const float* k, const float* v,
                             float* out, float* lse) = 0;
  // dq overwritten; dk, dv overwritten (same strides as q, k, v)
  virtual void attention_bwd(const AttnShape& s, const float* q, const float* k, const float* v,
                             const float* out, const float* lse, const float* dout, float* dq,
                             float* dk, float* dv) = 0;
  // For each row r with labels[r] != -100: loss[r] = lse(logits[r]) -
  // logits[r][labels[r]] and logits[r] is replaced by the gradient of
  // scale * loss[r]; ignored rows get loss 0 and a zero gradient.
  virtual void cross_entropy_rows(float* logits, const int32_t* labels, float* loss, int rows,
                                  int vocab, float scale) = 0;

  // out(rows, cols) = x * dropout mask (inverted dropout with probability p;
  // out may equal x). Row r is keyed row_keys[r / seq] (host memory, one per
  // sequence) and element c by (r % seq) * cols + c, with rowmath::dropout_factor.
  virtual void dropout(const float* x, float* out, int rows, int cols, int seq, const uint64_t* row_keys,
                       uint64_t salt, float p) = 0;

  // ---- bf16 parameter gathers (train.param_dtype = bf16) ---------------------------
  // words(ceil(n / 2) float-sized words) = x(n) rounded to bf16 (nearest even),
  // two per word, element 0 in the low half.
  virtual void pack_bf16(const float* x, float* words, size_t n) = 0;
  // out[r * n + j] = bf16 element j of words + r * stride_words, for r < rows, j < n.
  virtual void unpack_bf16(const float* words, size_t stride_words, float* out, size_t n, int rows) = 0;

  // ---- quantized frozen bases ---------------------------------------------------
  // out(codec.numel()) = the dequantized unit from its gathered regions
  // (codec.shards() * codec.shard_words() words).
  virtual void dequantize_unit(const quant::UnitCodec& codec, const float* regions, float* out) = 0;

  // ---- bf16 storage (the CUDA backend under train.param_dtype = bf16) -----------
  // The model's ops again over bf16 activations and gathered weights, as
  // torch FSDP's MixedPrecision(param_dtype=bf16) computes: every kernel does
  // its arithmetic in fp32 and rounds only what it stores; statistics (rstd,
  // lse, per-row losses) and weight gradients (the fp32 overload of gemm,
  // rmsnorm's dw, the embedding table gradient) stay fp32. A backend that
  // computes in fp32 only keeps these defaults, which throw. The CPU backend
  // implements them all with the same rounding points, so a CPU bf16 run is
  // the reference for a GPU one.
  virtual bool has_bf16_storage() const { return false; }
  // What runs the bf16 GEMMs, for the banner and run_info.json ("" without bf16 storage).
  virtual std::string bf16_gemm_name() const { return ""; }
  virtual void fill(bf16* p, float value, size_t n);
  virtual void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const bf16* a, int lda,
                    const bf16* b, int ldb, float beta, bf16* c, int ldc);
  // bf16 operands, fp32 C (weight gradients, accumulated with beta = 1; logits).
  virtual void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const bf16* a, int lda,
                    const bf16* b, int ldb, float beta, float* c, int ldc);
  virtual void axpy(float alpha, const bf16* x, bf16* y, size_t n);
  virtual void embedding_fwd(const int32_t* ids, const bf16* table, bf16* out, int n, int dim);
  virtual void embedding_bwd(const int32_t* ids, const bf16* dout, float* dtable, int n, int dim);
  virtual void rmsnorm_fwd(const bf16* x, const bf16* w, bf16* y, float* rstd, int rows, int dim, float eps);
  virtual void rmsnorm_bwd(const bf16* dy, const bf16* x, const bf16* w, const float* rstd, bf16* dx, float* dw,
                           int rows, int dim);
  virtual void rope(bf16* x, int ld, const int32_t* positions, const float* inv_freq, int rows, int n_heads,
                    int head_dim, bool inverse);
  virtual void swiglu_fwd(const bf16* gate, const bf16* up, int ld_in, bf16* out, int rows, int n);
  virtual void swiglu_bwd(const bf16* dout, const bf16* gate, const bf16* up, int ld_in, bf16* dgate, bf16* dup,
                          int ld_dgrad, int rows, int n);
  virtual void attention_fwd(const AttnShape& s, const bf16* q, const bf16* k, const bf16* v, bf16* out,
                             float* lse);
  virtual void attention_bwd(const AttnShape& s, const bf16* q, const bf16* k, const bf16* v, const bf16* out,
                             const float* lse, const bf16* dout, bf16* dq, bf16* dk, bf16* dv);
  virtual void cross_entropy_rows(bf16* logits, const int32_t* labels, float* loss, int rows, int vocab,
                                  float scale);
  virtual void dropout(const bf16* x, bf16* out, int rows, int cols, int seq, const uint64_t* row_keys,
                       uint64_t salt, float p);
  // out[r * n + j] = bf16 element j of words + r * stride_words (no widening).
  virtual void unpack_bf16(const float* words, size_t stride_words, bf16* out, size_t n, int rows);
  virtual void dequantize_unit(const quant::UnitCodec& codec, const float* regions, bf16* out);

  // ---- allocation accounting (implementations call these) ---------------------
 protected:
  void note_alloc(size_t bytes) {
    live_bytes_ += bytes;
    if (live_bytes_ > peak_bytes_) peak_bytes_ = live_bytes_;
  }
  void note_free(size_t bytes) { live_bytes_ -= bytes; }

 private:
  size_t live_bytes_ = 0, peak_bytes_ = 0;
};

std::unique_ptr<Backend> make_cpu_backend();
// A backend that allocates nothing and computes nothing but counts bytes:
// `llamaft plan` runs the real training code path on it to predict memory.
std::unique_ptr<Backend> make_counting_backend(bool bf16_storage = false);
// train.profile: runs every op on `inner` and times it, by op family, with
// the bytes and FLOPs of its arguments (counters(), cleared by the caller).
std::unique_ptr<Backend> make_profiling_backend(std::unique_ptr<Backend> inner);

}  // namespace llamaft
