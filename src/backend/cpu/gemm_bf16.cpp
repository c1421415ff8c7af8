#include "backend/cpu/gemm_bf16.hpp"

#include <dnnl.hpp>

#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "core/error.hpp"

namespace llamaft::cpu {

bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

Bf16GemmPath bf16_gemm_path() {
  static const Bf16GemmPath path = [] {
    const char* env = std::getenv("LLAMAFT_BF16_GEMM");
    if (env && std::strcmp(env, "widened") == 0) return Bf16GemmPath::kWidened;
    if (env && std::strcmp(env, "onednn") == 0) {
      LLAMAFT_REQUIRE(cpu_has_avx512_bf16(), "LLAMAFT_BF16_GEMM=onednn, but this CPU has no AVX512-BF16; "
                                             "unset it to use the widened fp32 path");
      return Bf16GemmPath::kOneDnn;
    }
    LLAMAFT_REQUIRE(!env || !*env, "LLAMAFT_BF16_GEMM=", env, " is not a bf16 GEMM path (onednn, widened)");
    return cpu_has_avx512_bf16() ? Bf16GemmPath::kOneDnn : Bf16GemmPath::kWidened;
  }();
  return path;
}

const char* bf16_gemm_path_name(Bf16GemmPath path) {
  return path == Bf16GemmPath::kOneDnn ? "onednn avx512_bf16" : "widened to fp32 (no avx512_bf16)";
}

namespace {

// ---- oneDNN matmul ---------------------------------------------------------------
// One primitive per (shape, strides, types, alpha, beta), built on first use.
// A stored row-major (rows, cols) with leading dimension ld, read transposed,
// is the same memory with strides {1, ld}: no copies either way.
using Key = std::array<int64_t, 12>;

// The plans are found under the lock and run outside it, each thread on its
// own stream: attention calls these from every OpenMP thread at once (a
// primitive may execute on several threads together; oneDNN then runs each
// call on its calling thread). A shape that changes every call (decoding's
// growing key count) would grow the map without end: past kMaxPlans it is
// emptied and refilled.
constexpr size_t kMaxPlans = 1024;
// Each plan keeps its scratchpad's description, and every thread gives it
// memory of its own (scratchpad_mode::user), so no two threads share one.
struct Plan {
  dnnl::matmul matmul;
  dnnl::memory::desc scratch;
};
struct OneDnn {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  std::map<Key, Plan> plans;
  std::mutex mu;
};

OneDnn& onednn() {
  static OneDnn* o = new OneDnn();  // never destroyed: GEMMs may run from static destructors' callers
  return *o;
}

uint32_t float_key(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

void onednn_matmul(dnnl::memory::data_type in_type, dnnl::memory::data_type out_type, bool ta, bool tb, int m,
                   int n, int k, float alpha, const void* a, int lda, const void* b, int ldb, float beta, void* c,
                   int ldc);

// C = alpha * (A B) + beta * C where an operand's rows lie apart (ld larger
// than compact): oneDNN 2.6 has no brgemm kernel for a scaled product of
// strided operands and falls back to gemm:jit at a sixth of the speed
// (LoRA's y += s t B^T into the fused QKV and gate-up outputs: 2.7 ms for
// 1024x2048x16, against 0.5 ms compact, 10% of a LoRA bf16 step; its
// dB += s dy^T t and dt = s dy B read dy inside those outputs). The product
// goes to a compact fp32 block at alpha 1, then alpha and beta apply in fp32
// and the sum is stored once: the formula oneDNN's output scale and sum
// post-op compute.
void scaled_strided(dnnl::memory::data_type in_type, dnnl::memory::data_type out_type, bool ta, bool tb, int m,
                         int n, int k, float alpha, const void* a, int lda, const void* b, int ldb, float beta,
                         void* c, int ldc) {
  thread_local FloatBuf tmp_buf;
  float* tmp = tmp_buf.get(static_cast<size_t>(m) * n);
  onednn_matmul(in_type, dnnl::memory::data_type::f32, ta, tb, m, n, k, 1.f, a, lda, b, ldb, 0.f, tmp, n);
  const bool out_bf16 = out_type == dnnl::memory::data_type::bf16;
#pragma omp parallel for schedule(static) if (static_cast<int64_t>(m) * n > 65536)
  for (int i = 0; i < m; ++i) {
    const float* t = tmp + static_cast<size_t>(i) * n;
    if (out_bf16) {
      bf16* row = static_cast<bf16*>(c) + static_cast<size_t>(i) * ldc;
      for (int j = 0; j < n; ++j) row[j] = bf16(alpha * t[j] + (beta != 0.f ? beta * static_cast<float>(row[j]) : 0.f));
    } else {
      float* row = static_cast<float*>(c) + static_cast<size_t>(i) * ldc;
      for (int j = 0; j < n; ++j) row[j] = alpha * t[j] + (beta != 0.f ? beta * row[j] : 0.f);
    }
  }
}

void onednn_matmul(dnnl::memory::data_type in_type, dnnl::memory::data_type out_type, bool ta, bool tb, int m,
                   int n, int k, float alpha, const void* a, int lda, const void* b, int ldb, float beta, void* c,
                   int ldc) {
  using dnnl::memory;
  const bool strided = ldc > n || lda > (ta ? m : k) || ldb > (tb ? k : n);
  if (alpha != 1.f && strided && m > 1)
    return scaled_strided(in_type, out_type, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  OneDnn& o = onednn();
  const Key key = {ta, tb, m, n, k, lda, ldb, ldc, static_cast<int64_t>(in_type), static_cast<int64_t>(out_type),
                   float_key(alpha), float_key(beta)};
  const memory::desc a_md({m, k}, in_type, ta ? memory::dims{1, lda} : memory::dims{lda, 1});
  const memory::desc b_md({k, n}, in_type, tb ? memory::dims{1, ldb} : memory::dims{ldb, 1});
  const memory::desc c_md({m, n}, out_type, memory::dims{ldc, 1});
  Plan plan;
  {
    std::lock_guard<std::mutex> lock(o.mu);
    auto it = o.plans.find(key);
    if (it == o.plans.end()) {
      if (o.plans.size() >= kMaxPlans) o.plans.clear();
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      if (alpha != 1.f) attr.set_output_scales(0, {alpha});
      if (beta != 0.f) {
        dnnl::post_ops po;
        po.append_sum(beta);
        attr.set_post_ops(po);
      }
      try {
        const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, o.engine);
        it = o.plans.emplace(key, Plan{dnnl::matmul(pd), pd.scratchpad_desc()}).first;
      } catch (const dnnl::error& e) {
        LLAMAFT_FAIL("oneDNN has no matmul for ", m, "x", n, "x", k, " (", e.what(), ")");
      }
    }
    plan = it->second;
  }
  thread_local dnnl::stream stream{o.engine};
  thread_local FloatBuf scratch_buf;
  const size_t scratch_bytes = plan.scratch.get_size();
  memory am(a_md, o.engine, const_cast<void*>(a)), bm(b_md, o.engine, const_cast<void*>(b)), cm(c_md, o.engine, c);
  memory sm(plan.scratch, o.engine, scratch_bytes ? scratch_buf.get((scratch_bytes + 3) / 4) : nullptr);
  plan.matmul.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}, {DNNL_ARG_SCRATCHPAD, sm}});
  stream.wait();
}

// ---- widened path ------------------------------------------------------------------
// Stored (rows, cols) blocks with leading dimension ld, widened to compact
// ones, all in one parallel region over their rows together (a GEMM's
// operands are widened at once: one fork and join instead of two or three).
struct WidenJob {
  const bf16* x;
  int rows, cols, ld;
  float* out;
};
void widen_jobs(const WidenJob* jobs, int count) {
  int64_t rows = 0;
  size_t total = 0;
  for (int j = 0; j < count; ++j) {
    rows += jobs[j].rows;
    total += static_cast<size_t>(jobs[j].rows) * jobs[j].cols;
  }
#pragma omp parallel for schedule(static) if (total > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    int j = 0;
    int64_t rr = r;
    while (rr >= jobs[j].rows) rr -= jobs[j++].rows;
    const WidenJob& w = jobs[j];
    widen_bf16(w.x + rr * w.ld, w.out + rr * w.cols, static_cast<size_t>(w.cols));
  }
}

struct Scratch {
  FloatBuf a, b, c;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// c_bf16 (with ldc): also widen C (beta != 0) into s.c, compact, in the same region.
void widened_gemm(GemmImpl impl, bool ta, bool tb, int m, int n, int k, float alpha, const bf16* a, int lda,
                  const bf16* b, int ldb, float beta, float* c, int ldc, const bf16* c_bf16 = nullptr,
                  int ldc_bf16 = 0) {
  Scratch& s = scratch();
  const int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
  WidenJob jobs[3] = {{a, ar, ac, lda, s.a.get(static_cast<size_t>(ar) * ac)},
                      {b, br, bc, ldb, s.b.get(static_cast<size_t>(br) * bc)},
                      {c_bf16, m, n, ldc_bf16, c}};
  widen_jobs(jobs, c_bf16 ? 3 : 2);
  sgemm(impl, ta, tb, m, n, k, alpha, jobs[0].out, ac, jobs[1].out, bc, beta, c, ldc);
}

}  // namespace

void gemm_bf16(Bf16GemmPath path, GemmImpl impl, bool ta, bool tb, int m, int n, int k, float alpha, const bf16* a,
               int lda, const bf16* b, int ldb, float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k == 0 || path == Bf16GemmPath::kWidened) {
    widened_gemm(impl, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  onednn_matmul(dnnl::memory::data_type::bf16, dnnl::memory::data_type::f32, ta, tb, m, n, k, alpha, a, lda, b,
                ldb, beta, c, ldc);
}

void gemm_bf16(Bf16GemmPath path, GemmImpl impl, bool ta, bool tb, int m, int n, int k, float alpha, const bf16* a,
               int lda, const bf16* b, int ldb, float beta, bf16* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k > 0 && path == Bf16GemmPath::kOneDnn) {
    onednn_matmul(dnnl::memory::data_type::bf16, dnnl::memory::data_type::bf16, ta, tb, m, n, k, alpha, a, lda, b,
                  ldb, beta, c, ldc);
    return;
  }
  // fp32 C, computed in fp32 (beta applied to the widened old C), rounded once.
  float* wc = scratch().c.get(static_cast<size_t>(m) * n);
  widened_gemm(impl, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, wc, n, beta != 0.f ? c : nullptr, ldc);
#pragma omp parallel for schedule(static) if (static_cast<size_t>(m) * n > 262144)
  for (int r = 0; r < m; ++r) round_to_bf16(wc + static_cast<size_t>(r) * n, c + static_cast<size_t>(r) * ldc, n);
}

void onednn_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                  int ldb, float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  onednn_matmul(dnnl::memory::data_type::f32, dnnl::memory::data_type::f32, ta, tb, m, n, k, alpha, a, lda, b, ldb,
                beta, c, ldc);
}

}  // namespace llamaft::cpu
