#include "backend/cuda/cuda_backend.hpp"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <map>
#include <type_traits>

#include "adamw.cuh"
#include "attention.cuh"
#include "cast.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "backend/op_cost.hpp"
#include "backend/registry.hpp"
#include "cross_entropy.cuh"
#include "launch_count.cuh"
#include "elementwise.cuh"
#include "embedding.cuh"
#include "quant.cuh"
#include "quant/quant.hpp"
#include "reduce.cuh"
#include "rmsnorm.cuh"
#include "rope.cuh"
#include "swiglu.cuh"

namespace llamaft {

namespace {
constexpr size_t kBlasWorkspaceBytes = size_t(32) << 20;  // what cuBLAS recommends on Hopper
constexpr size_t kMiB = size_t(1) << 20;
constexpr int kStagingSlots = 8;                  // uploads in flight before one waits
// Larger uploads (weights, checkpoint loads) copy synchronously: at most
// kStagingSlots x 16 MiB of pinned memory a rank.
constexpr size_t kMaxStagedBytes = size_t(16) << 20;
}  // namespace

// One op's entry in counters_: a call, its argument-derived bytes and FLOPs,
// and the launches kernels/ issued while it ran (plus library calls, which
// LLAMAFT_LAUNCH_CHECK does not see).
struct CudaBackend::Tally {
  // family == nullptr counts nothing: the op's implementation counts itself
  // (backend_ops.hpp's table says which ops do).
  Tally(CudaBackend& be, const char* family, double bytes, double flops = 0, int64_t library_calls = 0)
      : f(family ? &be.counters_.ops[family] : nullptr), start(cuda::launches_issued() - library_calls) {
    if (!f) return;
    ++f->calls;
    f->library_calls += library_calls;
    f->bytes += bytes;
    f->flops += flops;
  }
  ~Tally() {
    if (f) f->launches += cuda::launches_issued() - start;
  }
  Tally(const Tally&) = delete;
  Tally& operator=(const Tally&) = delete;
  StepCounters::Family* f;
  int64_t start;
};

// Pinned upload buffers used round-robin. A slot is reused only once the
// copy out of it has completed (its event); with kStagingSlots slots the
// uploads of one micro-batch never wait for each other.
struct CudaBackend::StagingRing {
  struct Slot {
    void* host = nullptr;
    size_t cap = 0;
    cudaEvent_t done = nullptr;
    bool pending = false;
  };
  std::array<Slot, kStagingSlots> slots{};
  int next = 0;
  ~StagingRing() {
    for (Slot& s : slots) {
      if (s.done) cudaEventDestroy(s.done);
      if (s.host) cudaFreeHost(s.host);
    }
  }
};

using op_cost::attention_io_bytes;

void CudaBackend::wait(const char* site) {
  ++counters_.syncs[site];
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// One cuBLASLt plan per (transposes, shape, leading dimensions, pointer
// alignments): the heuristic runs once per key, never in the step loop after
// the first step. Alignment is part of the key because the heuristic may pick
// kernels that need 16-byte (or stricter) aligned operands, and the model's
// operands are views at arbitrary float offsets into unit buffers.
struct CudaBackend::LtCache {
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool lt = false;  // false: no cuBLASLt algorithm for this case; use cublasSgemm
  };
  std::map<std::array<int64_t, 13>, Plan> plans;
  ~LtCache() {
    for (auto& [key, p] : plans) {
      if (p.op) cublasLtMatmulDescDestroy(p.op);
      for (auto* l : {p.a, p.b, p.c})
        if (l) cublasLtMatrixLayoutDestroy(l);
    }
  }
};

namespace {
// The largest power of two up to 256 that divides the address (1 for an odd
// one): a bf16 view at an odd element offset is only 2-byte aligned, and the
// preference must say so or cuBLASLt may pick a kernel that faults on it.
uint32_t alignment_of(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && v % a) a /= 2;
  return a;
}
}  // namespace

CudaBackend::CudaBackend(int device, size_t pool_bytes, int nccl_comms) : device_(device) {
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  LLAMAFT_REQUIRE(device >= 0 && device < count, "CUDA device ", device, " does not exist (", count,
                  " visible; check CUDA_VISIBLE_DEVICES and ranks per node)");
  CUDA_CHECK(cudaSetDevice(device));
  CUDA_CHECK(cudaFree(nullptr));  // create the context before measuring free memory
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  if (pool_bytes == 0) pool_bytes = cuda_default_pool_bytes(free_b, total_b, nccl_comms);
  pool_bytes = DeviceArena::round_up(pool_bytes);
  if (cudaMalloc(&pool_, pool_bytes) != cudaSuccess) {
    cudaGetLastError();
    LLAMAFT_FAIL(where_prefix(), "cannot reserve a CUDA memory pool of ", pool_bytes / kMiB, " MiB on device ",
                 device, " (", free_b / kMiB, " MiB free of ", total_b / kMiB,
                 " MiB); another process may be using this GPU");
  }
  arena_.reset(pool_, pool_bytes);
  try {
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&blas_));
    CUBLAS_CHECK(cublasSetStream(blas_, stream_));
    CUBLAS_CHECK(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));  // plain fp32: no TF32 tensor ops
    blas_workspace_ = pool_alloc(kBlasWorkspaceBytes, "the cuBLAS workspace");
    CUBLAS_CHECK(cublasSetWorkspace(blas_, blas_workspace_, kBlasWorkspaceBytes));
    CUBLAS_CHECK(cublasLtCreate(&lt_));
    lt_cache_ = std::make_unique<LtCache>();
    reduce_buf_ = static_cast<double*>(
        pool_alloc(sizeof(double) * (cuda::reduce_partials_needed() + 1), "the reduction buffer"));
    CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_result_), sizeof(double)));
    staging_ = std::make_unique<StagingRing>();
    for (auto& slot : staging_->slots) CUDA_CHECK(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming));
  } catch (...) {
    staging_.reset();
    if (host_result_) cudaFreeHost(host_result_);
    lt_cache_.reset();
    if (lt_) cublasLtDestroy(lt_);
    if (blas_) cublasDestroy(blas_);
    if (stream_) cudaStreamDestroy(stream_);
    cudaFree(pool_);
    throw;
  }
}

CudaBackend::~CudaBackend() {
  // Never throws: errors here are ignored (the process is usually exiting).
  if (stream_) cudaStreamSynchronize(stream_);
  if (host_result_) cudaFreeHost(host_result_);
  lt_cache_.reset();
  if (lt_) cublasLtDestroy(lt_);
  if (blas_) cublasDestroy(blas_);
  if (stream_) cudaStreamDestroy(stream_);
  if (pool_) cudaFree(pool_);
  cudaGetLastError();
}

std::string CudaBackend::name() const { return "cuda:" + std::to_string(device_); }

void* CudaBackend::pool_alloc(size_t bytes, const char* what) {
  void* p = arena_.allocate(bytes);
  if (!p)
    LLAMAFT_FAIL(where_prefix(), "CUDA out of memory on device ", device_, " allocating ", what, ": requested ",
                 bytes, " bytes, but the pool of ", arena_.capacity(), " bytes has ", arena_.free(),
                 " bytes free (largest free block ", arena_.largest_free(), " bytes; model buffers hold ",
                 live_bytes(), " bytes); reduce train.micro_batch_size or data.seq_len, or use more ranks");
  return p;
}

// Accounting uses the arena's rounded sizes on both sides, so live/peak are what the pool really holds.
void* CudaBackend::alloc_bytes(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = pool_alloc(bytes, "a buffer");
  note_alloc(DeviceArena::round_up(bytes));
  return p;
}

void CudaBackend::free_bytes(void* p) {
  if (!p) return;
  if (p == mirror_.device) mirror_ = Mirror{};
  const size_t size = arena_.release(p);
  if (size == 0) {
    // Called from destructors, so no throw: a stray pointer is a bug worth a loud line.
    std::fprintf(stderr, "%sllamaft: CudaBackend::free_bytes(%p): not a live block of this backend\n",
                 where_prefix().c_str(), p);
    return;
  }
  note_free(size);
}

float* CudaBackend::scratch(size_t floats) {
  if (floats > scratch_floats_) {
    const size_t grown = std::max(floats, scratch_floats_ * 2);
    if (scratch_) arena_.release(scratch_);  // stream order keeps earlier kernels' use safe
    scratch_ = nullptr;
    scratch_floats_ = 0;
    scratch_ = static_cast<float*>(pool_alloc(sizeof(float) * grown, "kernel scratch"));
    scratch_floats_ = grown;
  }
  return scratch_;
}

void CudaBackend::to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (dst == mirror_.device) mirror_ = Mirror{};  // overwritten: the host copy no longer holds
  Tally t(*this, "h2d", double(bytes), 0, 1);
  if (bytes > kMaxStagedBytes) {  // not in the step loop: weights and checkpoints
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
    wait("to_device_large");  // src may be reused as soon as we return
    return;
  }
  StagingRing::Slot& slot = staging_->slots[staging_->next];
  staging_->next = (staging_->next + 1) % kStagingSlots;
  if (slot.pending) {
    const cudaError_t q = cudaEventQuery(slot.done);
    if (q == cudaErrorNotReady) {
      ++counters_.syncs["upload_slot_reuse"];
      CUDA_CHECK(cudaEventSynchronize(slot.done));
    } else {
      CUDA_CHECK(q);
    }
    slot.pending = false;
  }
  if (slot.cap < bytes) {
    const size_t cap = std::min(kMaxStagedBytes, std::max({bytes, 2 * slot.cap, size_t(64) << 10}));
    if (slot.host) CUDA_CHECK(cudaFreeHost(slot.host));
    slot.host = nullptr;
    slot.cap = 0;
    CUDA_CHECK(cudaMallocHost(&slot.host, cap));
    slot.cap = cap;
  }
  std::memcpy(slot.host, src, bytes);
  CUDA_CHECK(cudaMemcpyAsync(dst, slot.host, bytes, cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaEventRecord(slot.done, stream_));
  slot.pending = true;
}

// The mirror serves group_by_id only while the buffer holds exactly this
// upload: another to_device or copy into it, or freeing it, drops it.
void CudaBackend::to_device_mirrored(void* dst, const void* src, size_t bytes) {
  to_device(dst, src, bytes);
  mirror_.device = dst;
  const auto* p = static_cast<const unsigned char*>(src);
  mirror_.host.assign(p, p + bytes);
}

void CudaBackend::to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  Tally t(*this, "d2h", double(bytes), 0, 1);
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  wait("to_host");
}

void CudaBackend::copy(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  if (dst == mirror_.device) mirror_ = Mirror{};
  Tally t(*this, "copy", 2.0 * bytes, 0, 1);
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
}

template <typename S>
void CudaBackend::fill_t(S* p, float value, size_t n) {
  cuda::fill(p, value, n, stream_);
}

void CudaBackend::synchronize() { wait("synchronize"); }

// Row-major C(M,N) = op(A) op(B) is column-major C^T(N,M) = op(B)^T op(A)^T:
// the row-major buffers are read as their column-major transposes.
// cuBLAS's "A" is our b (ldb), its "B" is our a (lda). Compute is always fp32
// (bf16 operands run on the tensor cores with fp32 accumulation; fp32
// operands are plain SGEMM-class kernels, no TF32).
void CudaBackend::lt_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const void* a, int lda, const void* b,
                          int ldb, float beta, void* c, int ldc, bool bf16_in, bool bf16_out) {
  if (m <= 0 || n <= 0) return;
  const double in_b = bf16_in ? 2 : 4, out_b = bf16_out ? 2 : 4;
  Tally t(*this, bf16_in ? (bf16_out ? "gemm_bf16" : "gemm_bf16_f32out") : "gemm_f32",
          op_cost::gemm_bytes(m, n, k, in_b, out_b, beta != 0.f), op_cost::gemm_flops(m, n, k), 1);
  const cublasOperation_t op_a = tb ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cudaDataType_t in_type = bf16_in ? CUDA_R_16BF : CUDA_R_32F;
  const cudaDataType_t out_type = bf16_out ? CUDA_R_16BF : CUDA_R_32F;
  const uint32_t al_a = alignment_of(b), al_b = alignment_of(a), al_c = alignment_of(c);
  const std::array<int64_t, 13> key = {ta, tb, m, n, k, lda, ldb, ldc, al_a, al_b, al_c, in_type, out_type};
  auto it = lt_cache_->plans.find(key);
  if (it == lt_cache_->plans.end()) {
    LtCache::Plan p;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
    // Stored (pre-op) shapes, column-major: "A" is n x k (or k x n), "B" is k x m (or m x k), C is n x m.
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, in_type, tb ? k : n, tb ? n : k, ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, in_type, ta ? m : k, ta ? k : m, lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, out_type, n, m, ldc));
    cublasLtMatmulPreference_t pref = nullptr;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = kBlasWorkspaceBytes;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof(al_c));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof(al_c));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(lt_, p.op, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    p.lt = st == CUBLAS_STATUS_SUCCESS && found > 0;
    if (p.lt) p.algo = result.algo;
    it = lt_cache_->plans.emplace(key, p).first;
  }
  const LtCache::Plan& p = it->second;
  if (!p.lt) {  // no cuBLASLt algorithm (e.g. operands only 2-byte aligned): cuBLAS picks one itself
    if (!bf16_in)
      CUBLAS_CHECK(cublasSgemm(blas_, op_a, op_b, n, m, k, &alpha, static_cast<const float*>(b), ldb,
                               static_cast<const float*>(a), lda, &beta, static_cast<float*>(c), ldc));
    else
      CUBLAS_CHECK(cublasGemmEx(blas_, op_a, op_b, n, m, k, &alpha, b, in_type, ldb, a, in_type, lda, &beta, c,
                                out_type, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  CUBLAS_CHECK(cublasLtMatmul(lt_, p.op, &alpha, b, p.a, a, p.b, &beta, c, p.c, c, p.c, &p.algo, blas_workspace_,
                              kBlasWorkspaceBytes, stream_));
}

template <typename S>
void CudaBackend::gemm_t(bool ta, bool tb, int m, int n, int k, float alpha, const S* a, int lda, const S* b,
                         int ldb, float beta, S* c, int ldc) {
  constexpr bool bf16_storage = std::is_same_v<S, bf16>;
  lt_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bf16_storage, bf16_storage);
}
void CudaBackend::gemm_t(bool ta, bool tb, int m, int n, int k, float alpha, const bf16* a, int lda, const bf16* b,
                         int ldb, float beta, float* c, int ldc) {
  lt_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, true, false);
}

template <typename S>
void CudaBackend::axpy_t(float alpha, const S* x, S* y, size_t n) {
  cuda::axpy(alpha, x, y, n, stream_);
}

double CudaBackend::reduce(const float* x, size_t n, bool squares) {
  double* partials = reduce_buf_;                                // (reduce_partials_needed)
  double* result = reduce_buf_ + cuda::reduce_partials_needed();  // (1)
  {
    Tally t(*this, squares ? "sum_squares" : "sum", 4.0 * n, 0, 1);
    cuda::reduce_sum(x, n, squares, partials, result, stream_);
    CUDA_CHECK(cudaMemcpyAsync(host_result_, result, sizeof(double), cudaMemcpyDeviceToHost, stream_));
  }
  wait(squares ? "sum_squares" : "sum");
  return *host_result_;
}

double CudaBackend::sum_t(const float* x, size_t n) { return reduce(x, n, false); }
double CudaBackend::sum_squares_t(const float* x, size_t n) { return reduce(x, n, true); }

void CudaBackend::scale_t(float* x, float alpha, size_t n) { cuda::scale(x, alpha, n, stream_); }

// AdamW reads p, m, v, g and writes p, m, v: 28 bytes a parameter in fp32.
void CudaBackend::adamw_t(float* p, float* m, float* v, const float* g, size_t n, const rowmath::AdamWParams& a) {
  cuda::adamw(p, m, v, g, n, a, stream_);
}

double CudaBackend::sum_squares_many(const float* const* xs, const size_t* ns, int count) {
  if (count <= 0) return 0;
  if (static_cast<size_t>(count) > many_cap_) {
    const size_t grown = std::max<size_t>(count, 2 * many_cap_);
    if (many_results_) arena_.release(many_results_);  // stream order keeps earlier kernels' use safe
    many_results_ = static_cast<double*>(pool_alloc(sizeof(double) * grown, "the norm results"));
    many_cap_ = grown;
  }
  {
    double bytes = 0;
    for (int i = 0; i < count; ++i) bytes += 4.0 * ns[i];
    Tally t(*this, "sum_squares_many", bytes, 0, 1);
    // Stream order lets every reduction reuse one partials buffer.
    for (int i = 0; i < count; ++i) cuda::reduce_sum(xs[i], ns[i], true, reduce_buf_, many_results_ + i, stream_);
    many_host_.resize(count);
    CUDA_CHECK(cudaMemcpyAsync(many_host_.data(), many_results_, sizeof(double) * count, cudaMemcpyDeviceToHost,
                               stream_));
  }
  wait("sum_squares_many");
  double total = 0;
  for (double v : many_host_) total += v;
  return total;
}

double CudaBackend::adamw_many(const AdamWShard* shards, int count, const rowmath::AdamWParams& a) {
  std::vector<cuda::AdamWTensor<float>> list;
  list.reserve(count);
  double n = 0;
  for (int i = 0; i < count; ++i) {
    list.push_back({shards[i].p, shards[i].m, shards[i].v, shards[i].g, shards[i].n});
    n += double(shards[i].n);
  }
  {
    Tally t(*this, "adamw", 28.0 * n);
    cuda::adamw_multi(list.data(), count, a, stream_);
  }
  return weights_sum_squares(shards, count);  // a second batched read (one host round trip)
}

template <typename S>
void CudaBackend::embedding_fwd_t(const int32_t* ids, const S* table, S* out, int n, int dim) {
  cuda::embedding_fwd(ids, table, out, n, dim, stream_);
}

// Deterministic embedding gradients: group the positions by id on the host
// (a stable sort of n ints), then one thread per (id, column) adds
// its group in position order. No atomics, so repeated tokens sum in the
// same order every run.
const int32_t* CudaBackend::group_by_id(const int32_t* ids, int n, int& n_rows) {
  host_ids_.resize(n);
  if (mirror_.device == ids && mirror_.host.size() >= sizeof(int32_t) * n)  // uploaded by to_device_mirrored
    std::memcpy(host_ids_.data(), mirror_.host.data(), sizeof(int32_t) * n);
  else
    to_host(host_ids_.data(), ids, sizeof(int32_t) * n);
  std::vector<int32_t> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return host_ids_[a] < host_ids_[b]; });
  host_groups_.clear();
  std::vector<int32_t> offsets;
  for (int i = 0; i < n; ++i)
    if (i == 0 || host_ids_[order[i]] != host_ids_[order[i - 1]]) {
      host_groups_.push_back(host_ids_[order[i]]);
      offsets.push_back(i);
    }
  n_rows = static_cast<int>(host_groups_.size());
  offsets.push_back(n);
  host_groups_.insert(host_groups_.end(), offsets.begin(), offsets.end());
  host_groups_.insert(host_groups_.end(), order.begin(), order.end());
  if (host_groups_.size() > groups_cap_) {
    const size_t grown = std::max(host_groups_.size(), 2 * groups_cap_);
    if (groups_) arena_.release(groups_);  // stream order keeps earlier kernels' use safe
    groups_ = static_cast<int32_t*>(pool_alloc(sizeof(int32_t) * grown, "the embedding gradient grouping"));
    groups_cap_ = grown;
  }
  to_device(groups_, host_groups_.data(), sizeof(int32_t) * host_groups_.size());
  return groups_;
}

template <typename S>
void CudaBackend::embedding_bwd_t(const int32_t* ids, const S* dout, float* dtable, int n, int dim) {
  if (n <= 0) return;
  int rows = 0;
  const int32_t* g = group_by_id(ids, n, rows);
  // dout once; each distinct id's fp32 table row read and written once.
  Tally t(*this, "embedding_bwd", double(sizeof(S)) * n * dim + 8.0 * rows * dim + 4.0 * (2 * rows + 1 + n));
  cuda::embedding_bwd_grouped(g, g + rows, g + 2 * rows + 1, rows, dout, dtable, dim, stream_);
}

template <typename S>
void CudaBackend::rmsnorm_fwd_t(const S* x, const S* w, S* y, float* rstd, int rows, int dim, float eps) {
  cuda::rmsnorm_fwd(x, w, y, rstd, rows, dim, eps, stream_);
}

template <typename S>
void CudaBackend::rmsnorm_bwd_t(const S* dy, const S* x, const S* w, const float* rstd, S* dx, float* dw, int rows,
                                int dim) {
  float* work = dw ? scratch(cuda::rmsnorm_bwd_workspace_floats(rows, dim)) : nullptr;
  cuda::rmsnorm_bwd(dy, x, w, rstd, dx, dw, rows, dim, work, stream_);
}

template <typename S>
void CudaBackend::rope_t(S* x, int ld, const int32_t* positions, const float* inv_freq, int rows, int n_heads,
                         int head_dim, bool inverse) {
  cuda::rope(x, ld, positions, inv_freq, rows, n_heads, head_dim, inverse, stream_);
}

template <typename S>
void CudaBackend::swiglu_fwd_t(const S* gate, const S* up, int ld_in, S* out, int rows, int n) {
  cuda::swiglu_fwd(gate, up, ld_in, out, rows, n, stream_);
}

template <typename S>
void CudaBackend::swiglu_bwd_t(const S* dout, const S* gate, const S* up, int ld_in, S* dgate, S* dup, int ld_dgrad,
                               int rows, int n) {
  cuda::swiglu_bwd(dout, gate, up, ld_in, dgate, dup, ld_dgrad, rows, n, stream_);
}

template <typename S>
void CudaBackend::attention_fwd_t(const AttnShape& s, const S* q, const S* k, const S* v, S* out, float* lse) {
  cuda::attention_fwd(s, q, k, v, out, lse, stream_);
}

template <typename S>
void CudaBackend::attention_bwd_t(const AttnShape& s, const S* q, const S* k, const S* v, const S* out,
                                  const float* lse, const S* dout, S* dq, S* dk, S* dv) {
  float* work = scratch(cuda::attention_bwd_workspace_floats(s));
  cuda::attention_bwd(s, q, k, v, out, lse, dout, dq, dk, dv, work, stream_);
}

template <typename S>
void CudaBackend::cross_entropy_rows_t(S* logits, const int32_t* labels, float* loss, int rows, int vocab,
                                       float scale) {
  float* work = scratch(cuda::cross_entropy_workspace_floats(rows, vocab));
  cuda::cross_entropy_rows(logits, labels, loss, rows, vocab, scale, work, stream_);
}

const uint64_t* CudaBackend::device_dropout_keys(const uint64_t* row_keys, int rows, int seq) {
  const size_t n = static_cast<size_t>((rows + seq - 1) / seq);
  if (n > dropout_keys_cap_) {
    const size_t grown = std::max<size_t>(n, 2 * dropout_keys_cap_);
    if (dropout_keys_) arena_.release(dropout_keys_);  // stream order keeps earlier kernels' use safe
    dropout_keys_ = static_cast<uint64_t*>(pool_alloc(sizeof(uint64_t) * grown, "LoRA dropout keys"));
    dropout_keys_cap_ = grown;
    last_dropout_keys_.clear();
  }
  // The same keys serve every adapter of a micro-batch: upload them once.
  if (last_dropout_keys_.size() != n || !std::equal(row_keys, row_keys + n, last_dropout_keys_.begin())) {
    to_device(dropout_keys_, row_keys, sizeof(uint64_t) * n);
    last_dropout_keys_.assign(row_keys, row_keys + n);
  }
  return dropout_keys_;
}

template <typename S>
void CudaBackend::dropout_t(const S* x, S* out, int rows, int cols, int seq, const uint64_t* row_keys, uint64_t salt,
                            float p) {
  cuda::dropout(x, out, rows, cols, seq, device_dropout_keys(row_keys, rows, seq), salt, p, stream_);
}

const float* CudaBackend::dynamic_map() {
  if (!dynamic_map_) {
    dynamic_map_ = static_cast<float*>(pool_alloc(sizeof(float) * 256, "the 8-bit dynamic map"));
    to_device(dynamic_map_, quant::dynamic_map(), sizeof(float) * 256);
  }
  return dynamic_map_;
}

const quant::DequantItem* CudaBackend::codec_item_table(const quant::UnitCodec& codec) {
  void*& table = codec_items_[&codec];
  const auto& items = codec.dequant_items();
  if (!table && !items.empty()) {
    table = pool_alloc(sizeof(quant::DequantItem) * items.size(), "a quantized unit's item table");
    to_device(table, items.data(), sizeof(quant::DequantItem) * items.size());
  }
  return static_cast<const quant::DequantItem*>(table);
}

template <typename S>
void CudaBackend::dequantize_unit_t(const quant::UnitCodec& codec, const float* regions, S* out) {
  for (const quant::PlainCopy& c : codec.plain_copies()) {
    if constexpr (std::is_same_v<S, float>)
      copy(out + c.dst, regions + c.src_word, sizeof(float) * static_cast<size_t>(c.count));
    else  // fp32 header values (norms), rounded once
      cuda::f32_to_bf16(regions + c.src_word, reinterpret_cast<uint16_t*>(out + c.dst),
                        static_cast<size_t>(c.count), stream_);
  }
  cuda::dequantize_items(regions, codec_item_table(codec), static_cast<int>(codec.dequant_items().size()),
                         codec.kind(), dynamic_map(), out, stream_);
}

void CudaBackend::pack_bf16_t(const float* x, float* words, size_t n) {
  Tally t(*this, "pack_bf16", 6.0 * n, 0, n & 1);
  auto* bits = reinterpret_cast<uint16_t*>(words);
  cuda::f32_to_bf16(x, bits, n, stream_);
  if (n & 1) CUDA_CHECK(cudaMemsetAsync(bits + n, 0, sizeof(uint16_t), stream_));
}

template <typename S>
void CudaBackend::unpack_bf16_t(const float* words, size_t stride_words, S* out, size_t n, int rows) {
  cuda::bf16_rows(reinterpret_cast<const uint16_t*>(words), 2 * stride_words, out, n, rows, stream_);
}

// Every op of backend_ops.hpp's table: counted under its family with the
// table's bytes and FLOPs (unless it counts itself), then its name_t above.
#define LLAMAFT_CUDA_OP(ret, name, cuda_family, profile_family, params, args, bytes, flops) \
  ret CudaBackend::name params {                                                           \
    Tally t(*this, cuda_family, bytes, flops);                                             \
    return name##_t args;                                                                  \
  }
LLAMAFT_BACKEND_OPS(LLAMAFT_CUDA_OP)
#undef LLAMAFT_CUDA_OP

std::unique_ptr<Backend> make_cuda_backend(int device, size_t pool_bytes, int nccl_comms) {
  return std::make_unique<CudaBackend>(device, pool_bytes, nccl_comms);
}

}  // namespace llamaft
