// train.profile: a backend that runs every op on another one (the CPU
// backend, which computes synchronously) and counts, per op family, the
// calls, the wall time inside them, and the bytes and FLOPs their arguments
// say they move (backend/op_cost.hpp, as the CUDA backend's step counters
// do). What a step spends outside the backend (FSDP's collectives and
// bookkeeping, the host code) is the step's time less the sum; train's
// report prints the table (train/run_report.cpp).
#include <chrono>
#include <unordered_map>

#include "backend/backend.hpp"
#include "backend/op_cost.hpp"
#include "quant/quant.hpp"

namespace llamaft {
namespace {

using Clock = std::chrono::steady_clock;

class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) { counters_.timed = true; }

  std::string name() const override { return inner_->name(); }
  StepCounters* counters() override { return &counters_; }
  bool host_resident() const override { return inner_->host_resident(); }
  void* native_stream() const override { return inner_->native_stream(); }
  int device_ordinal() const override { return inner_->device_ordinal(); }
  void synchronize() override { inner_->synchronize(); }
  bool has_bf16_storage() const override { return inner_->has_bf16_storage(); }
  std::string bf16_gemm_name() const override { return inner_->bf16_gemm_name(); }

  // Memory: the inner backend allocates; this one keeps the accounting
  // (live_bytes and peak_bytes are the Backend base's, per object).
  void* alloc_bytes(size_t bytes) override {
    void* p = inner_->alloc_bytes(bytes);
    if (p) {
      sizes_[p] = bytes;
      note_alloc(bytes);
    }
    return p;
  }
  void free_bytes(void* p) override {
    auto it = sizes_.find(p);
    if (it != sizes_.end()) {
      note_free(it->second);
      sizes_.erase(it);
    }
    inner_->free_bytes(p);
  }
  void to_device(void* dst, const void* src, size_t bytes) override {
    timed("copies", 2.0 * bytes, 0, [&] { inner_->to_device(dst, src, bytes); });
  }
  void to_device_mirrored(void* dst, const void* src, size_t bytes) override {
    timed("copies", 2.0 * bytes, 0, [&] { inner_->to_device_mirrored(dst, src, bytes); });
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    timed("copies", 2.0 * bytes, 0, [&] { inner_->to_host(dst, src, bytes); });
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    timed("copies", 2.0 * bytes, 0, [&] { inner_->copy(dst, src, bytes); });
  }
  void fill(float* p, float value, size_t n) override {
    timed("fill_axpy_scale", 4.0 * n, 0, [&] { inner_->fill(p, value, n); });
  }
  void fill(bf16* p, float value, size_t n) override {
    timed("fill_axpy_scale", 2.0 * n, 0, [&] { inner_->fill(p, value, n); });
  }

  // Dense math.
  void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
            float beta, float* c, int ldc) override {
    timed("gemm_f32", op_cost::gemm_bytes(m, n, k, 4, 4, beta != 0.f), op_cost::gemm_flops(m, n, k),
          [&] { inner_->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); });
  }
  void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const bf16* a, int lda, const bf16* b, int ldb,
            float beta, bf16* c, int ldc) override {
    timed("gemm_bf16", op_cost::gemm_bytes(m, n, k, 2, 2, beta != 0.f), op_cost::gemm_flops(m, n, k),
          [&] { inner_->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); });
  }
  void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const bf16* a, int lda, const bf16* b, int ldb,
            float beta, float* c, int ldc) override {
    timed("gemm_bf16_f32out", op_cost::gemm_bytes(m, n, k, 2, 4, beta != 0.f), op_cost::gemm_flops(m, n, k),
          [&] { inner_->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); });
  }
  void axpy(float alpha, const float* x, float* y, size_t n) override {
    timed("fill_axpy_scale", 12.0 * n, 0, [&] { inner_->axpy(alpha, x, y, n); });
  }
  void axpy(float alpha, const bf16* x, bf16* y, size_t n) override {
    timed("fill_axpy_scale", 6.0 * n, 0, [&] { inner_->axpy(alpha, x, y, n); });
  }
  double sum(const float* x, size_t n) override {
    double r = 0;
    timed("sums", 4.0 * n, 0, [&] { r = inner_->sum(x, n); });
    return r;
  }
  double sum_squares(const float* x, size_t n) override {
    double r = 0;
    timed("sums", 4.0 * n, 0, [&] { r = inner_->sum_squares(x, n); });
    return r;
  }
  double sum_squares_many(const float* const* xs, const size_t* ns, int count) override {
    double bytes = 0, r = 0;
    for (int i = 0; i < count; ++i) bytes += 4.0 * ns[i];
    timed("sums", bytes, 0, [&] { r = inner_->sum_squares_many(xs, ns, count); });
    return r;
  }
  void scale(float* x, float alpha, size_t n) override {
    timed("fill_axpy_scale", 8.0 * n, 0, [&] { inner_->scale(x, alpha, n); });
  }
  void adamw(float* p, float* m, float* v, const float* g, size_t n, const rowmath::AdamWParams& a) override {
    timed("adamw", 28.0 * n, 0, [&] { inner_->adamw(p, m, v, g, n, a); });
  }
  void adamw_many(const AdamWShard* shards, int count, const rowmath::AdamWParams& a) override {
    double bytes = 0;
    for (int i = 0; i < count; ++i) bytes += 28.0 * shards[i].n;
    timed("adamw", bytes, 0, [&] { inner_->adamw_many(shards, count, a); });
  }

  // Model ops, fp32 and bf16 storage (elem: the activations' bytes).
  void embedding_fwd(const int32_t* ids, const float* table, float* out, int n, int dim) override {
    timed("embedding", 8.0 * n * dim + 4.0 * n, 0, [&] { inner_->embedding_fwd(ids, table, out, n, dim); });
  }
  void embedding_fwd(const int32_t* ids, const bf16* table, bf16* out, int n, int dim) override {
    timed("embedding", 4.0 * n * dim + 4.0 * n, 0, [&] { inner_->embedding_fwd(ids, table, out, n, dim); });
  }
  void embedding_bwd(const int32_t* ids, const float* dout, float* dtable, int n, int dim) override {
    timed("embedding", 12.0 * n * dim + 4.0 * n, 0, [&] { inner_->embedding_bwd(ids, dout, dtable, n, dim); });
  }
  void embedding_bwd(const int32_t* ids, const bf16* dout, float* dtable, int n, int dim) override {
    timed("embedding", 10.0 * n * dim + 4.0 * n, 0, [&] { inner_->embedding_bwd(ids, dout, dtable, n, dim); });
  }
  template <typename T>
  void norm_fwd(const T* x, const T* w, T* y, float* rstd, int rows, int dim, float eps) {
    const double e = sizeof(T);
    timed("rmsnorm", e * 2.0 * rows * dim + e * dim + 4.0 * rows, 0,
          [&] { inner_->rmsnorm_fwd(x, w, y, rstd, rows, dim, eps); });
  }
  template <typename T>
  void norm_bwd(const T* dy, const T* x, const T* w, const float* rstd, T* dx, float* dw, int rows, int dim) {
    const double e = sizeof(T);
    timed("rmsnorm", e * 3.0 * rows * dim + e * dim + 4.0 * rows + (dw ? 8.0 * dim : 0.0), 0,
          [&] { inner_->rmsnorm_bwd(dy, x, w, rstd, dx, dw, rows, dim); });
  }
  void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int rows, int dim, float eps) override {
    norm_fwd(x, w, y, rstd, rows, dim, eps);
  }
  void rmsnorm_fwd(const bf16* x, const bf16* w, bf16* y, float* rstd, int rows, int dim, float eps) override {
    norm_fwd(x, w, y, rstd, rows, dim, eps);
  }
  void rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                   int rows, int dim) override {
    norm_bwd(dy, x, w, rstd, dx, dw, rows, dim);
  }
  void rmsnorm_bwd(const bf16* dy, const bf16* x, const bf16* w, const float* rstd, bf16* dx, float* dw, int rows,
                   int dim) override {
    norm_bwd(dy, x, w, rstd, dx, dw, rows, dim);
  }
  template <typename T>
  void rope_t(T* x, int ld, const int32_t* pos, const float* inv_freq, int rows, int heads, int hd, bool inverse) {
    timed("rope", sizeof(T) * 2.0 * rows * heads * hd + 4.0 * rows, 0,
          [&] { inner_->rope(x, ld, pos, inv_freq, rows, heads, hd, inverse); });
  }
  void rope(float* x, int ld, const int32_t* pos, const float* inv_freq, int rows, int heads, int hd,
            bool inverse) override {
    rope_t(x, ld, pos, inv_freq, rows, heads, hd, inverse);
  }
  void rope(bf16* x, int ld, const int32_t* pos, const float* inv_freq, int rows, int heads, int hd,
            bool inverse) override {
    rope_t(x, ld, pos, inv_freq, rows, heads, hd, inverse);
  }
  template <typename T>
  void swiglu_fwd_t(const T* gate, const T* up, int ld_in, T* out, int rows, int n) {
    timed("swiglu", sizeof(T) * 3.0 * rows * n, 0, [&] { inner_->swiglu_fwd(gate, up, ld_in, out, rows, n); });
  }
  template <typename T>
  void swiglu_bwd_t(const T* dout, const T* gate, const T* up, int ld_in, T* dgate, T* dup, int ld_dgrad, int rows,
                    int n) {
    timed("swiglu", sizeof(T) * 5.0 * rows * n, 0,
          [&] { inner_->swiglu_bwd(dout, gate, up, ld_in, dgate, dup, ld_dgrad, rows, n); });
  }
  void swiglu_fwd(const float* gate, const float* up, int ld_in, float* out, int rows, int n) override {
    swiglu_fwd_t(gate, up, ld_in, out, rows, n);
  }
  void swiglu_fwd(const bf16* gate, const bf16* up, int ld_in, bf16* out, int rows, int n) override {
    swiglu_fwd_t(gate, up, ld_in, out, rows, n);
  }
  void swiglu_bwd(const float* dout, const float* gate, const float* up, int ld_in, float* dgate, float* dup,
                  int ld_dgrad, int rows, int n) override {
    swiglu_bwd_t(dout, gate, up, ld_in, dgate, dup, ld_dgrad, rows, n);
  }
  void swiglu_bwd(const bf16* dout, const bf16* gate, const bf16* up, int ld_in, bf16* dgate, bf16* dup,
                  int ld_dgrad, int rows, int n) override {
    swiglu_bwd_t(dout, gate, up, ld_in, dgate, dup, ld_dgrad, rows, n);
  }
  template <typename T>
  void attention_fwd_t(const AttnShape& s, const T* q, const T* k, const T* v, T* out, float* lse) {
    timed("attention", op_cost::attention_io_bytes(s, sizeof(T)), op_cost::attention_fwd_flops(s),
          [&] { inner_->attention_fwd(s, q, k, v, out, lse); });
  }
  template <typename T>
  void attention_bwd_t(const AttnShape& s, const T* q, const T* k, const T* v, const T* out, const float* lse,
                       const T* dout, T* dq, T* dk, T* dv) {
    timed("attention", op_cost::attention_bwd_io_bytes(s, sizeof(T)), op_cost::attention_bwd_flops(s),
          [&] { inner_->attention_bwd(s, q, k, v, out, lse, dout, dq, dk, dv); });
  }
  void attention_fwd(const AttnShape& s, const float* q, const float* k, const float* v, float* out,
                     float* lse) override {
    attention_fwd_t(s, q, k, v, out, lse);
  }
  void attention_fwd(const AttnShape& s, const bf16* q, const bf16* k, const bf16* v, bf16* out,
                     float* lse) override {
    attention_fwd_t(s, q, k, v, out, lse);
  }
  void attention_bwd(const AttnShape& s, const float* q, const float* k, const float* v, const float* out,
                     const float* lse, const float* dout, float* dq, float* dk, float* dv) override {
    attention_bwd_t(s, q, k, v, out, lse, dout, dq, dk, dv);
  }
  void attention_bwd(const AttnShape& s, const bf16* q, const bf16* k, const bf16* v, const bf16* out,
                     const float* lse, const bf16* dout, bf16* dq, bf16* dk, bf16* dv) override {
    attention_bwd_t(s, q, k, v, out, lse, dout, dq, dk, dv);
  }
  void cross_entropy_rows(float* logits, const int32_t* labels, float* loss, int rows, int vocab,
                          float scale) override {
    timed("loss_head_softmax", 8.0 * rows * vocab + 8.0 * rows, 0,
          [&] { inner_->cross_entropy_rows(logits, labels, loss, rows, vocab, scale); });
  }
  void cross_entropy_rows(bf16* logits, const int32_t* labels, float* loss, int rows, int vocab,
                          float scale) override {
    timed("loss_head_softmax", 4.0 * rows * vocab + 8.0 * rows, 0,
          [&] { inner_->cross_entropy_rows(logits, labels, loss, rows, vocab, scale); });
  }
  void dropout(const float* x, float* out, int rows, int cols, int seq, const uint64_t* keys, uint64_t salt,
               float p) override {
    timed("dropout", 8.0 * rows * cols, 0, [&] { inner_->dropout(x, out, rows, cols, seq, keys, salt, p); });
  }
  void dropout(const bf16* x, bf16* out, int rows, int cols, int seq, const uint64_t* keys, uint64_t salt,
               float p) override {
    timed("dropout", 4.0 * rows * cols, 0, [&] { inner_->dropout(x, out, rows, cols, seq, keys, salt, p); });
  }

  // Casts and dequantization.
  void pack_bf16(const float* x, float* words, size_t n) override {
    timed("casts", 6.0 * n, 0, [&] { inner_->pack_bf16(x, words, n); });
  }
  void unpack_bf16(const float* words, size_t stride, float* out, size_t n, int rows) override {
    timed("casts", 6.0 * n * rows, 0, [&] { inner_->unpack_bf16(words, stride, out, n, rows); });
  }
  void unpack_bf16(const float* words, size_t stride, bf16* out, size_t n, int rows) override {
    timed("casts", 4.0 * n * rows, 0, [&] { inner_->unpack_bf16(words, stride, out, n, rows); });
  }
  void dequantize_unit(const quant::UnitCodec& codec, const float* regions, float* out) override {
    timed("dequantize", 4.0 * codec.shards() * codec.shard_words() + 4.0 * codec.numel(), 0,
          [&] { inner_->dequantize_unit(codec, regions, out); });
  }
  void dequantize_unit(const quant::UnitCodec& codec, const float* regions, bf16* out) override {
    timed("dequantize", 4.0 * codec.shards() * codec.shard_words() + 2.0 * codec.numel(), 0,
          [&] { inner_->dequantize_unit(codec, regions, out); });
  }

 private:
  template <typename F>
  void timed(const char* family, double bytes, double flops, F&& f) {
    const auto t0 = Clock::now();
    f();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    StepCounters::Family& fam = counters_.ops[family];
    ++fam.calls;
    fam.bytes += bytes;
    fam.flops += flops;
    fam.seconds += s;
  }

  std::unique_ptr<Backend> inner_;
  StepCounters counters_;
  std::unordered_map<void*, size_t> sizes_;
};

}  // namespace

std::unique_ptr<Backend> make_profiling_backend(std::unique_ptr<Backend> inner) {
  return std::make_unique<ProfilingBackend>(std::move(inner));
}

}  // namespace llamaft
