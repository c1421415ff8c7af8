// The CPU backend: fp32, OpenMP across rows/heads, OpenBLAS (or Eigen) GEMMs.
// This is the reference every test runs and the fallback on machines without
// GPUs, so it is written for speed as well as clarity: attention runs as
// per-head GEMMs over query blocks (the causal upper triangle is skipped
// block-wise), and every row op is one parallel loop over rows.
//
// With train.param_dtype = bf16 it also computes as the CUDA backend does
// (backend.hpp's compute section): bf16 activations and gathered weights, bf16
// GEMMs with fp32 accumulation (gemm_bf16.hpp: oneDNN on AVX512-BF16, else
// exact widening and SGEMM), and every other op widening its bf16 inputs,
// computing in fp32 with the same rowmath functions, and rounding once what
// it stores. Attention rounds P and dS to bf16 before their products, as the
// tensor-core kernels (kernels/attention_tc.cu) do for head_dim 64 and 128.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cpu/attention_bf16.hpp"
#include "backend/cpu/attention_blocks.hpp"
#include "backend/cpu/gemm.hpp"
#include "backend/cpu/gemm_bf16.hpp"
#include "backend/cpu/vec_math.hpp"
#include "backend/row_math.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "quant/quant.hpp"

namespace llamaft {
namespace {

using namespace rowmath;
using cpu::kQueryBlock;
using cpu::key_range;
using cpu::QueryBlock;

// A row of storage type T seen as fp32: for float the row itself, for bf16 a
// widened copy in a buffer of this object (one object per thread and per
// operand). commit() rounds what a bf16 row computed into its storage.
template <typename T>
class F32Row {
  static constexpr bool kFloat = std::is_same_v<T, float>;

 public:
  explicit F32Row(int n) : buf_(kFloat ? 0 : static_cast<size_t>(n)) {}
  const float* read(const T* x, int n) {
    if constexpr (kFloat) return x;
    else return widen(x, n);
  }
  float* edit(T* x, int n) {  // read and then written back with commit()
    if constexpr (kFloat) return x;
    else return widen(x, n);
  }
  float* write(T* x) {  // written only, then commit()
    if constexpr (kFloat) return x;
    else return buf_.data();
  }
  void commit(const float* v, T* x, int n) {
    if constexpr (!kFloat) cpu::round_to_bf16(v, x, static_cast<size_t>(n));
  }

 private:
  float* widen(const T* x, int n) {
    cpu::widen_bf16(x, buf_.data(), static_cast<size_t>(n));
    return buf_.data();
  }
  std::vector<float> buf_;
};

class CpuBackend final : public Backend {
 public:
  CpuBackend() : gemm_impl_(cpu::default_gemm_impl()), bf16_path_(cpu::bf16_gemm_path()) {}
  std::string name() const override { return std::string("cpu/") + cpu::gemm_impl_name(gemm_impl_); }
  bool host_resident() const override { return true; }

  void* alloc_bytes(size_t bytes) override {
    if (bytes == 0) return nullptr;
    // A 64-byte header keeps the size, so frees can be accounted.
    const size_t total = (bytes + 63) / 64 * 64 + 64;
    auto* base = static_cast<char*>(std::aligned_alloc(64, total));
    if (!base)
      LLAMAFT_FAIL("out of host memory allocating ", bytes, " bytes (", live_bytes(),
                   " bytes already held by this process); reduce train.micro_batch_size or data.seq_len, "
                   "or use more ranks");
    *reinterpret_cast<size_t*>(base) = bytes;
    note_alloc(bytes);
    return base + 64;
  }
  void free_bytes(void* p) override {
    if (!p) return;
    char* base = static_cast<char*>(p) - 64;
    note_free(*reinterpret_cast<size_t*>(base));
    std::free(base);
  }
  void to_device(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
  void to_host(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memmove(dst, src, bytes);
  }
  bool has_bf16_storage() const override { return true; }
  std::string bf16_gemm_name() const override { return cpu::bf16_gemm_path_name(bf16_path_); }

  // One pass: each weight updated and its square added (in double, as
  // sum_squares), so the finiteness check reads no shard a second time.
  double adamw_many(const AdamWShard* shards, int count, const AdamWParams& a) override {
    double total = 0;
    for (int i = 0; i < count; ++i) {
      float *p = shards[i].p, *m = shards[i].m, *v = shards[i].v;
      const float* g = shards[i].g;
      const size_t n = shards[i].n;
      double sq = 0;
#pragma omp parallel for simd reduction(+ : sq) schedule(static) if (n > 32768)
      for (size_t j = 0; j < n; ++j) {
        adamw_elem(p[j], m[j], v[j], g[j], a);
        sq += static_cast<double>(p[j]) * p[j];
      }
      total += sq;
    }
    return total;
  }

  // Every op of backend_ops.hpp's table runs its name_t below.
#define LLAMAFT_CPU_OP(ret, name, cuda_family, profile_family, params, args, bytes, flops) \
  ret name params override { return name##_t args; }
  LLAMAFT_BACKEND_OPS(LLAMAFT_CPU_OP)
#undef LLAMAFT_CPU_OP

 private:
  // ---- GEMMs, reductions, the optimizer, casts ------------------------------------------
  // Few rows (a decode step, a short eval request): OpenBLAS packs the whole
  // of the other operand, a weight matrix, on every call (perf: 51% of `eval
  // --task` at batch 1 in sgemm_incopy), where oneDNN's matmul reads it as
  // it is: 1.6-2x faster at 1 to 40 rows on SmolLM2's shapes, equal from 160
  // (the bench in the commit). Narrow products (n <= 64: LoRA's rank-r
  // ones) stay with OpenBLAS, which packs little there, so oneDNN's cache of
  // planned shapes holds only the weight GEMMs. Both accumulate in fp32;
  // only the order of the additions differs. The choice depends on the shape
  // alone, so a run is as deterministic as before.
  static constexpr int kFewRows = 64;
  void gemm_t(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
              float beta, float* c, int ldc) {
    if (m <= kFewRows && k > 0 && n > kFewRows && gemm_impl_ == cpu::GemmImpl::kOpenBlas) {
      cpu::onednn_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
    cpu::sgemm(gemm_impl_, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  // bf16 operands, bf16 or fp32 C.
  template <typename C>
  void gemm_t(bool ta, bool tb, int m, int n, int k, float alpha, const bf16* a, int lda, const bf16* b, int ldb,
              float beta, C* c, int ldc) {
    cpu::gemm_bf16(bf16_path_, gemm_impl_, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  // In double, with a vector of partial sums per thread: one accumulator
  // waits on each addition's latency (the gradient norm and the weights'
  // finiteness check ran at 4.7 GB/s on 2 cores, a fifth of the copy
  // bandwidth). The order differs from a sequential sum by at most n * 2^-53
  // relative, far below the fp32 quantities these feed.
  static double sum_t(const float* x, size_t n) {
    double s = 0;
#pragma omp parallel for simd reduction(+ : s) schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; ++i) s += x[i];
    return s;
  }
  static double sum_squares_t(const float* x, size_t n) {
    double s = 0;
#pragma omp parallel for simd reduction(+ : s) schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
    return s;
  }
  static void scale_t(float* x, float alpha, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; ++i) x[i] *= alpha;
  }
  static void adamw_t(float* p, float* m, float* v, const float* g, size_t n, const AdamWParams& a) {
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; ++i) adamw_elem(p[i], m[i], v[i], g[i], a);
  }
  static void pack_bf16_t(const float* x, float* words, size_t n) {
    auto* bits = reinterpret_cast<uint16_t*>(words);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) bits[i] = f32_to_bf16(x[i]);
    if (n & 1) bits[n] = 0;
  }
  // bf16 words to fp32 (exact) or to bf16 (the bits as they are).
  template <typename T>
  static void unpack_bf16_t(const float* words, size_t stride_words, T* out, size_t n, int rows) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const auto* bits = reinterpret_cast<const uint16_t*>(words + r * stride_words);
      for (size_t i = 0; i < n; ++i) {
        if constexpr (std::is_same_v<T, float>) out[r * n + i] = bf16_to_f32(bits[i]);
        else out[r * n + i].bits = bits[i];
      }
    }
  }
  template <typename T>
  void dequantize_unit_t(const quant::UnitCodec& codec, const float* regions, T* out) {
    codec.dequantize(regions, out);  // host memory: no staging; parallel over items
  }
  // fp32 attention as it is; bf16 attention widened, computed in fp32 with
  // P and dS rounded as the tensor-core kernels round them, and stored rounded.
  template <typename T>
  void attention_fwd_t(const AttnShape& s, const T* q, const T* k, const T* v, T* out, float* lse) {
    if constexpr (std::is_same_v<T, float>) attention_fwd_core(s, q, k, v, out, lse, false);
    else attention_fwd_bf16(s, q, k, v, out, lse);
  }
  template <typename T>
  void attention_bwd_t(const AttnShape& s, const T* q, const T* k, const T* v, const T* out, const float* lse,
                       const T* dout, T* dq, T* dk, T* dv) {
    if constexpr (std::is_same_v<T, float>) attention_bwd_core(s, q, k, v, out, lse, dout, dq, dk, dv, false);
    else attention_bwd_bf16(s, q, k, v, out, lse, dout, dq, dk, dv);
  }
  void attention_fwd_bf16(const AttnShape& s, const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse);
  void attention_bwd_bf16(const AttnShape& s, const bf16* q, const bf16* k, const bf16* v, const bf16* out,
                          const float* lse, const bf16* dout, bf16* dq, bf16* dk, bf16* dv);

  // ---- the row ops, for either storage type ---------------------------------------------
  // One body serves fp32 and bf16 storage, as the CUDA kernels are templated
  // on T: values load with static_cast<float> (exact for both) and store with
  // static_cast<T> (rounding only for bf16), and everything between is the
  // same fp32 arithmetic; rows go through F32Row.
  template <typename T>
  static void fill_t(T* p, float value, size_t n) {
    const T v = static_cast<T>(value);
    if constexpr (std::is_same_v<T, float>) {
      if (n > kStreamFloats) return cpu::fill_streaming(p, value, n);
    }
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; ++i) p[i] = v;
  }
  // Past this (4 MiB), a fill is a zeroed gradient no cache holds.
  static constexpr size_t kStreamFloats = size_t{1} << 20;
  template <typename T>
  static void axpy_t(float alpha, const T* x, T* y, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; ++i) y[i] = static_cast<T>(static_cast<float>(y[i]) + alpha * static_cast<float>(x[i]));
  }
  template <typename T>
  static void embedding_fwd_t(const int32_t* ids, const T* table, T* out, int n, int dim) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; ++i)
      std::memcpy(out + static_cast<size_t>(i) * dim, table + static_cast<size_t>(ids[i]) * dim, sizeof(T) * dim);
  }
  template <typename T>
  static void embedding_bwd_t(const int32_t* ids, const T* dout, float* dtable, int n, int dim) {
    // Columns are split across threads so repeated ids never race.
#pragma omp parallel
    {
      const int nt = omp_get_num_threads(), t = omp_get_thread_num();
      const int c0 = dim * t / nt, c1 = dim * (t + 1) / nt;
      for (int i = 0; i < n; ++i) {
        float* dst = dtable + static_cast<size_t>(ids[i]) * dim;
        const T* src = dout + static_cast<size_t>(i) * dim;
        for (int c = c0; c < c1; ++c) dst[c] += static_cast<float>(src[c]);
      }
    }
  }
  template <typename T>
  static void rmsnorm_fwd_t(const T* x, const T* w, T* y, float* rstd, int rows, int dim, float eps) {
    F32Row<T> w_row(dim);
    const float* wf = w_row.read(w, dim);
#pragma omp parallel
    {
      F32Row<T> x_row(dim), y_row(dim);
#pragma omp for schedule(static)
      for (int r = 0; r < rows; ++r) {
        const size_t o = static_cast<size_t>(r) * dim;
        float* yf = y_row.write(y + o);
        rstd[r] = cpu::rmsnorm_row_fwd(x_row.read(x + o, dim), wf, yf, dim, eps);
        y_row.commit(yf, y + o, dim);
      }
    }
  }
  template <typename T>
  static void rmsnorm_bwd_t(const T* dy, const T* x, const T* w, const float* rstd, T* dx, float* dw, int rows,
                            int dim) {
    F32Row<T> w_row(dim);
    const float* wf = w_row.read(w, dim);
    const int nt = omp_get_max_threads();
    std::vector<float> partial(dw ? static_cast<size_t>(nt) * dim : 0, 0.f);
#pragma omp parallel
    {
      F32Row<T> dy_row(dim), x_row(dim), dx_row(dim);
      float* my_dw = dw ? partial.data() + static_cast<size_t>(omp_get_thread_num()) * dim : nullptr;
#pragma omp for schedule(static)
      for (int r = 0; r < rows; ++r) {
        const size_t o = static_cast<size_t>(r) * dim;
        float* dxf = dx_row.write(dx + o);
        cpu::rmsnorm_row_bwd(dy_row.read(dy + o, dim), x_row.read(x + o, dim), wf, rstd[r], dxf, my_dw, dim);
        dx_row.commit(dxf, dx + o, dim);
      }
    }
    if (dw)
      for (int t = 0; t < nt; ++t)
        for (int i = 0; i < dim; ++i) dw[i] += partial[static_cast<size_t>(t) * dim + i];
  }
  template <typename T>
  static void rope_t(T* x, int ld, const int32_t* positions, const float* inv_freq, int rows, int n_heads,
                     int head_dim, bool inverse) {
    const int half = head_dim / 2;
#pragma omp parallel
    {
      std::vector<float> cs(half), sn(half);
#pragma omp for schedule(static)
      for (int r = 0; r < rows; ++r) {
        const float pos = static_cast<float>(positions[r]);
        for (int i = 0; i < half; ++i) {
          const float angle = pos * inv_freq[i];  // fp32, as HF computes it
          cs[i] = cosf(angle);
          sn[i] = inverse ? -sinf(angle) : sinf(angle);
        }
        T* row = x + static_cast<size_t>(r) * ld;
        for (int h = 0; h < n_heads; ++h) {
          T* v = row + h * head_dim;
          for (int i = 0; i < half; ++i) {
            float a = static_cast<float>(v[i]), b = static_cast<float>(v[i + half]);
            rope_rotate(a, b, cs[i], sn[i]);
            v[i] = static_cast<T>(a);
            v[i + half] = static_cast<T>(b);
          }
        }
      }
    }
  }
  // Element access the vectorizer sees through (a bf16 temporary inside an
  // omp simd loop is not): the same values as static_cast.
  static float load_f32(const float* p) { return *p; }
  static float load_f32(const bf16* p) { return bf16_to_f32(p->bits); }
  static void store_f32(float* p, float v) { *p = v; }
  static void store_f32(bf16* p, float v) { p->bits = f32_to_bf16(v); }
  template <typename T>
  static void swiglu_fwd_t(const T* gate, const T* up, int ld_in, T* out, int rows, int n) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const T* g = gate + static_cast<size_t>(r) * ld_in;
      const T* u = up + static_cast<size_t>(r) * ld_in;
      T* o = out + static_cast<size_t>(r) * n;
#pragma omp simd
      for (int i = 0; i < n; ++i) {
        const float gf = load_f32(g + i);
        // rowmath::swiglu_fwd: silu(g) * u, with the vectorized exp
        store_f32(o + i, gf * cpu::sigmoid_simd(gf) * load_f32(u + i));
      }
    }
  }
  template <typename T>
  static void swiglu_bwd_t(const T* dout, const T* gate, const T* up, int ld_in, T* dgate, T* dup, int ld_dgrad,
                           int rows, int n) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const T* g = gate + static_cast<size_t>(r) * ld_in;
      const T* u = up + static_cast<size_t>(r) * ld_in;
      const T* d = dout + static_cast<size_t>(r) * n;
      T* dg = dgate + static_cast<size_t>(r) * ld_dgrad;
      T* du = dup + static_cast<size_t>(r) * ld_dgrad;
#pragma omp simd
      for (int i = 0; i < n; ++i) {
        // rowmath::swiglu_bwd, with the vectorized exp
        const float df = load_f32(d + i), gf = load_f32(g + i), uf = load_f32(u + i);
        const float sg = cpu::sigmoid_simd(gf);
        store_f32(du + i, df * gf * sg);
        store_f32(dg + i, df * uf * sg * (1.0f + gf * (1.0f - sg)));
      }
    }
  }
  template <typename T>
  static void dropout_t(const T* x, T* out, int rows, int cols, int seq, const uint64_t* row_keys, uint64_t salt,
                        float p) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const size_t base = static_cast<size_t>(r) * cols;
      const uint64_t key = row_keys[r / seq], idx0 = static_cast<uint64_t>(r % seq) * cols;
      for (int c = 0; c < cols; ++c)
        out[base + c] =
            static_cast<T>(static_cast<float>(x[base + c]) * rowmath::dropout_factor(key, salt, idx0 + c, p));
    }
  }
  template <typename T>
  static void cross_entropy_rows_t(T* logits, const int32_t* labels, float* loss, int rows, int vocab, float scale) {
#pragma omp parallel
    {
      F32Row<T> row(vocab);
      std::vector<float> exps(static_cast<size_t>(vocab));
#pragma omp for schedule(static)
      for (int r = 0; r < rows; ++r) {
        T* stored = logits + static_cast<size_t>(r) * vocab;
        float* f = row.edit(stored, vocab);
        loss[r] = cross_entropy_row(f, labels[r], vocab, scale, exps.data());
        row.commit(f, stored, vocab);
      }
    }
  }

  // One row of cross_entropy_rows in fp32: returns the loss, leaves the gradient in row.
  // `exps` is vocab floats of scratch.
  static float cross_entropy_row(float* row, int label, int vocab, float scale, float* exps) {
    if (label == kIgnoreIndex) {
      std::memset(row, 0, sizeof(float) * vocab);
      return 0.f;
    }
    const float mx = cpu::max_lanes(row, vocab);
    // The sum of exp(x - max) over the vocabulary in double: summed one fp32
    // addition at a time, every term below half an ulp of the running sum
    // (~1 once the max is in) is lost, biasing the log-sum-exp down (4e-5
    // relative on SmolLM2's 49,152-token vocabulary). In double the error is
    // at most vocab * 2^-53 relative (5e-12 at 49,152), far below the final
    // rounding to fp32.
    // Two vectorized passes: the exponentials, then their sum.
#pragma omp simd
    for (int i = 0; i < vocab; ++i) exps[i] = cpu::exp_simd(row[i] - mx);
    const double se = cpu::sum_lanes(vocab, [&](int i) { return static_cast<double>(exps[i]); });
    const float lse_r = mx + static_cast<float>(std::log(se));
    const float loss = lse_r - row[label];
    // rowmath::ce_grad_elem, with the vectorized exp.
#pragma omp simd
    for (int i = 0; i < vocab; ++i) row[i] = scale * (cpu::exp_simd(row[i] - lse_r) - (i == label ? 1.f : 0.f));
    return loss;
  }

  // fp32 attention; round_p rounds P and dS to bf16 before their products.
  void attention_fwd_core(const AttnShape& s, const float* q, const float* k, const float* v, float* out,
                          float* lse, bool round_p);
  void attention_bwd_core(const AttnShape& s, const float* q, const float* k, const float* v, const float* out,
                          const float* lse, const float* dout, float* dq, float* dk, float* dv, bool round_p);

  cpu::GemmImpl gemm_impl_;
  cpu::Bf16GemmPath bf16_path_;
};

void CpuBackend::attention_fwd_core(const AttnShape& s, const float* q, const float* k, const float* v,
                                    float* out, float* lse, bool round_p) {
  const int group = s.n_heads / s.n_kv_heads;
  const int hd = s.head_dim;
  const int n_qblocks = (s.tq + kQueryBlock - 1) / kQueryBlock;
  const int tasks = s.batch * s.n_heads * n_qblocks;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(kQueryBlock) * s.tk);  // (rows, kend)
    float inv_sum[kQueryBlock];
#pragma omp for schedule(dynamic)
    for (int task = 0; task < tasks; ++task) {
      const int qb = task % n_qblocks;
      const int h = (task / n_qblocks) % s.n_heads;
      const int b = task / (n_qblocks * s.n_heads);
      const int g = h / group;
      const QueryBlock blk(s, qb);
      const int t0 = blk.t0, rows = blk.rows, kend = blk.kend;
      const float* qh = q + (static_cast<size_t>(b) * s.tq + t0) * s.ldq + h * hd;
      const float* kg = k + static_cast<size_t>(b) * s.tk * s.ldk + g * hd;
      const float* vg = v + static_cast<size_t>(b) * s.tk * s.ldv + g * hd;
      float* oh = out + (static_cast<size_t>(b) * s.tq + t0) * s.ldo + h * hd;
      float* S = scores.data();
      cpu::sgemm(gemm_impl_, false, true, rows, kend, hd, s.scale, qh, s.ldq, kg, s.ldk, 0.f, S, kend);
      for (int r = 0; r < rows; ++r) {
        int lo, hi;
        key_range(s, b, t0 + r, &lo, &hi);
        float* row = S + static_cast<size_t>(r) * kend;
        double se;
        const float mx = cpu::softmax_row_exp(row, kend, lo, hi, &se);
        const float inv = static_cast<float>(1.0 / se);
        if (round_p) {  // bf16 P, unnormalised; O is divided by the fp32 row sum afterwards
          inv_sum[r] = inv;
          for (int j = lo; j < hi; ++j) row[j] = static_cast<float>(bf16(row[j]));
        } else {
          for (int j = lo; j < hi; ++j) row[j] *= inv;
        }
        lse[(static_cast<size_t>(b) * s.n_heads + h) * s.tq + t0 + r] = mx + static_cast<float>(std::log(se));
      }
      cpu::sgemm(gemm_impl_, false, false, rows, hd, kend, 1.f, S, kend, vg, s.ldv, 0.f, oh, s.ldo);
      if (round_p)
        for (int r = 0; r < rows; ++r)
          for (int i = 0; i < hd; ++i) oh[static_cast<size_t>(r) * s.ldo + i] *= inv_sum[r];
    }
  }
}

void CpuBackend::attention_bwd_core(const AttnShape& s, const float* q, const float* k, const float* v,
                                    const float* out, const float* lse, const float* dout, float* dq,
                                    float* dk, float* dv, bool round_p) {
  const int group = s.n_heads / s.n_kv_heads;
  const int hd = s.head_dim;
  const int n_qblocks = (s.tq + kQueryBlock - 1) / kQueryBlock;
  const int tasks = s.batch * s.n_kv_heads;  // each task owns dk/dv of one (b, kv head)
#pragma omp parallel
  {
    std::vector<float> P(static_cast<size_t>(kQueryBlock) * s.tk), dP(P.size());
#pragma omp for schedule(dynamic)
    for (int task = 0; task < tasks; ++task) {
      const int g = task % s.n_kv_heads, b = task / s.n_kv_heads;
      const float* kg = k + static_cast<size_t>(b) * s.tk * s.ldk + g * hd;
      const float* vg = v + static_cast<size_t>(b) * s.tk * s.ldv + g * hd;
      float* dkg = dk + static_cast<size_t>(b) * s.tk * s.ldk + g * hd;
      float* dvg = dv + static_cast<size_t>(b) * s.tk * s.ldv + g * hd;
      for (int t = 0; t < s.tk; ++t) {
        std::memset(dkg + static_cast<size_t>(t) * s.ldk, 0, sizeof(float) * hd);
        std::memset(dvg + static_cast<size_t>(t) * s.ldv, 0, sizeof(float) * hd);
      }
      for (int h = g * group; h < (g + 1) * group; ++h) {
        for (int qb = 0; qb < n_qblocks; ++qb) {
          const QueryBlock blk(s, qb);
          const int t0 = blk.t0, rows = blk.rows, kend = blk.kend;
          const size_t qrow0 = static_cast<size_t>(b) * s.tq + t0;
          const float* qh = q + qrow0 * s.ldq + h * hd;
          const float* oh = out + qrow0 * s.ldo + h * hd;
          const float* doh = dout + qrow0 * s.ldo + h * hd;
          float* dqh = dq + qrow0 * s.ldq + h * hd;
          const float* lse_h = lse + (static_cast<size_t>(b) * s.n_heads + h) * s.tq + t0;
          // P = softmax(scale Q K^T) recomputed from lse; dP = dO V^T
          cpu::sgemm(gemm_impl_, false, true, rows, kend, hd, s.scale, qh, s.ldq, kg, s.ldk, 0.f,
                     P.data(), kend);
          cpu::sgemm(gemm_impl_, false, true, rows, kend, hd, 1.f, doh, s.ldo, vg, s.ldv, 0.f,
                     dP.data(), kend);
          for (int r = 0; r < rows; ++r) {
            int lo, hi;
            key_range(s, b, t0 + r, &lo, &hi);
            const float* o_r = oh + static_cast<size_t>(r) * s.ldo;
            const float* do_r = doh + static_cast<size_t>(r) * s.ldo;
            float D = 0.f;  // rowsum(dO * O)
            for (int i = 0; i < hd; ++i) D += do_r[i] * o_r[i];
            float* p = P.data() + static_cast<size_t>(r) * kend;
            float* ds = dP.data() + static_cast<size_t>(r) * kend;
            cpu::attention_row_grad(p, ds, kend, lo, hi, 1.f, lse_h[r], D);
            if (round_p)
              for (int j = 0; j < kend; ++j) {
                p[j] = static_cast<float>(bf16(p[j]));
                ds[j] = static_cast<float>(bf16(ds[j]));
              }
          }
          cpu::sgemm(gemm_impl_, false, false, rows, hd, kend, s.scale, dP.data(), kend, kg, s.ldk,
                     0.f, dqh, s.ldq);
          cpu::sgemm(gemm_impl_, true, false, kend, hd, rows, s.scale, dP.data(), kend, qh, s.ldq,
                     1.f, dkg, s.ldk);
          cpu::sgemm(gemm_impl_, true, false, kend, hd, rows, 1.f, P.data(), kend, doh, s.ldo, 1.f,
                     dvg, s.ldv);
        }
      }
    }
  }
}

// ---- bf16 attention: on the bf16 GEMMs where they run in hardware and P and
// dS are rounded (attention_bf16.hpp); otherwise widened (exactly) to fp32,
// computed by the cores above with bf16 P and dS where the GPU's tensor-core
// kernels round them, and rounded once on the way out.
namespace {
// An fp32 block that is written before it is read (no zero fill).
struct Block {
  explicit Block(size_t n) : data(new float[n]), size(n) {}
  std::unique_ptr<float[]> data;
  size_t size;
};
// rows x cols of x (row stride ld) -> compact fp32.
Block widen_rows(const bf16* x, int ld, size_t rows, int cols) {
  Block out(rows * cols);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < static_cast<int64_t>(rows); ++r)
    cpu::widen_bf16(x + r * ld, out.data.get() + r * cols, cols);
  return out;
}
void round_rows(const Block& x, int cols, bf16* out, int ld) {
  const int64_t rows = static_cast<int64_t>(x.size / cols);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) cpu::round_to_bf16(x.data.get() + r * cols, out + r * ld, cols);
}
// The tensor-core kernels' head dims (kernels/attention_tc.cu); other head
// dims run the GPU's SIMT kernels, which keep P and dS in fp32.
bool rounds_p(int head_dim) { return head_dim == 64 || head_dim == 128; }
AttnShape compact(const AttnShape& s) {
  AttnShape c = s;
  c.ldq = c.ldo = s.n_heads * s.head_dim;
  c.ldk = c.ldv = s.n_kv_heads * s.head_dim;
  return c;
}
}  // namespace

void CpuBackend::attention_fwd_bf16(const AttnShape& s, const bf16* q, const bf16* k, const bf16* v, bf16* out,
                                    float* lse) {
  if (cpu::attention_bf16_gemms_apply(s, bf16_path_))
    return cpu::attention_fwd_bf16_gemms(bf16_path_, gemm_impl_, s, q, k, v, out, lse);
  const AttnShape c = compact(s);
  const size_t qrows = static_cast<size_t>(s.batch) * s.tq, krows = static_cast<size_t>(s.batch) * s.tk;
  const Block qf = widen_rows(q, s.ldq, qrows, c.ldq), kf = widen_rows(k, s.ldk, krows, c.ldk),
              vf = widen_rows(v, s.ldv, krows, c.ldv);
  Block of(qrows * c.ldo);
  attention_fwd_core(c, qf.data.get(), kf.data.get(), vf.data.get(), of.data.get(), lse, rounds_p(s.head_dim));
  round_rows(of, c.ldo, out, s.ldo);
}

void CpuBackend::attention_bwd_bf16(const AttnShape& s, const bf16* q, const bf16* k, const bf16* v,
                                    const bf16* out, const float* lse, const bf16* dout, bf16* dq, bf16* dk,
                                    bf16* dv) {
  if (cpu::attention_bf16_gemms_apply(s, bf16_path_))
    return cpu::attention_bwd_bf16_gemms(bf16_path_, gemm_impl_, s, q, k, v, out, lse, dout, dq, dk, dv);
  const AttnShape c = compact(s);
  const size_t qrows = static_cast<size_t>(s.batch) * s.tq, krows = static_cast<size_t>(s.batch) * s.tk;
  const Block qf = widen_rows(q, s.ldq, qrows, c.ldq), kf = widen_rows(k, s.ldk, krows, c.ldk),
              vf = widen_rows(v, s.ldv, krows, c.ldv), of = widen_rows(out, s.ldo, qrows, c.ldo),
              dof = widen_rows(dout, s.ldo, qrows, c.ldo);
  Block dqf(qrows * c.ldq), dkf(krows * c.ldk), dvf(krows * c.ldv);
  attention_bwd_core(c, qf.data.get(), kf.data.get(), vf.data.get(), of.data.get(), lse, dof.data.get(),
                     dqf.data.get(), dkf.data.get(), dvf.data.get(), rounds_p(s.head_dim));
  round_rows(dqf, c.ldq, dq, s.ldq);
  round_rows(dkf, c.ldk, dk, s.ldk);
  round_rows(dvf, c.ldv, dv, s.ldv);
}

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace llamaft
