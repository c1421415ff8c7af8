#include "backend/cuda/cuda_backend.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <map>
#include <vector>

#include "attention.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "cross_entropy.cuh"
#include "elementwise.cuh"
#include "embedding.cuh"
#include "rmsnorm.cuh"
#include "rope.cuh"
#include "swiglu.cuh"

namespace llamaft {

bool cuda_device_available() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return false;
  }
  return n > 0;
}

namespace {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    CUDA_CHECK(cudaSetDevice(device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&blas_));
    CUBLAS_CHECK(cublasSetStream(blas_, stream_));
    CUDA_CHECK(cudaMalloc(&scalar_, sizeof(double)));
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    for (auto& [size, list] : free_)
      for (void* p : list) cudaFree(p);
    cudaFree(scalar_);
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }
  std::string name() const override { return "cuda:" + std::to_string(device_); }

  // Caching allocator: blocks are kept by rounded size and reused.
  void* alloc_bytes(size_t bytes) override {
    if (bytes == 0) return nullptr;
    const size_t rounded = (bytes + 511) / 512 * 512;
    void* p = nullptr;
    auto& list = free_[rounded];
    if (!list.empty()) {
      p = list.back();
      list.pop_back();
    } else if (cudaMalloc(&p, rounded) != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      LLAMAFT_FAIL(where_prefix(), "out of GPU memory allocating ", rounded, " bytes (", free_b,
                   " free of ", total_b, "; llamaft holds ", live_bytes(),
                   "); reduce train.micro_batch_size or data.seq_len, or use more ranks");
    }
    sizes_[p] = rounded;
    note_alloc(rounded);
    return p;
  }
  void free_bytes(void* p) override {
    if (!p) return;
    auto it = sizes_.find(p);
    if (it == sizes_.end()) return;
    note_free(it->second);
    free_[it->second].push_back(p);
    sizes_.erase(it);
  }
  void to_device(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  void fill(float* p, float value, size_t n) override { cuda::fill(p, value, n, stream_); }
  void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
  void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
            float beta, float* c, int ldc) override {
    if (m == 0 || n == 0) return;
    CUBLAS_CHECK(cublasSgemm(blas_, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha,
                             b, ldb, a, lda, &beta, c, ldc));
  }
  void axpy(float alpha, const float* x, float* y, size_t n) override { cuda::axpy(alpha, x, y, n, stream_); }
  double sum(const float* x, size_t n) override { return reduce(x, n, false); }
  double sum_squares(const float* x, size_t n) override { return reduce(x, n, true); }
  void scale(float* x, float alpha, size_t n) override { cuda::scale(x, alpha, n, stream_); }
  void adamw(float* p, float* m, float* v, const float* g, size_t n, const rowmath::AdamWParams& a) override {
    cuda::adamw(p, m, v, g, n, a, stream_);
  }
  void embedding_fwd(const int32_t* ids, const float* table, float* out, int n, int dim) override {
    cuda::embedding_fwd(ids, table, out, n, dim, stream_);
  }
  void embedding_bwd(const int32_t* ids, const float* dout, float* dtable, int n, int dim) override {
    cuda::embedding_bwd(ids, dout, dtable, n, dim, stream_);
  }
  void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int rows, int dim, float eps) override {
    cuda::rmsnorm_fwd(x, w, y, rstd, rows, dim, eps, stream_);
  }
  void rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw, int rows,
                   int dim) override {
    cuda::rmsnorm_bwd(dy, x, w, rstd, dx, dw, rows, dim, stream_);
  }
  void rope(float* x, int ld, const int32_t* positions, const float* inv_freq, int rows, int n_heads, int head_dim,
            bool inverse) override {
    cuda::rope(x, ld, positions, inv_freq, rows, n_heads, head_dim, inverse, stream_);
  }
  void swiglu_fwd(const float* gate, const float* up, int ld_in, float* out, int rows, int n) override {
    cuda::swiglu_fwd(gate, up, ld_in, out, rows, n, stream_);
  }
  void swiglu_bwd(const float* dout, const float* gate, const float* up, int ld_in, float* dgate, float* dup,
                  int ld_dgrad, int rows, int n) override {
    cuda::swiglu_bwd(dout, gate, up, ld_in, dgate, dup, ld_dgrad, rows, n, stream_);
  }
  void attention_fwd(const AttnShape& s, const float* q, const float* k, const float* v, float* out,
                     float* lse) override {
    cuda::attention_fwd(s, q, k, v, out, lse, stream_);
  }
  void attention_bwd(const AttnShape& s, const float* q, const float* k, const float* v, const float* out,
                     const float* lse, const float* dout, float* dq, float* dk, float* dv) override {
    cuda::attention_bwd(s, q, k, v, out, lse, dout, dq, dk, dv, stream_);
  }
  void cross_entropy_rows(float* logits, const int32_t* labels, float* loss, int rows, int vocab,
                          float scale) override {
    cuda::cross_entropy_rows(logits, labels, loss, rows, vocab, scale, stream_);
  }

 private:
  double reduce(const float* x, size_t n, bool squares) {
    cuda::reduce_sum(x, n, squares, static_cast<double*>(scalar_), stream_);
    double out = 0;
    to_host(&out, scalar_, sizeof(double));
    return out;
  }

  int device_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  void* scalar_ = nullptr;
  std::map<size_t, std::vector<void*>> free_;
  std::map<void*, size_t> sizes_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

}  // namespace llamaft
