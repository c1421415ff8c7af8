// The CUDA backend: fp32 storage (bf16 comes later; the kernels in kernels/
// are templated on the storage type), cuBLASLt fp32 GEMMs (no TF32) with the
// heuristic's algorithm cached per shape and pointer alignment, the
// kernels for everything else, all on one non-blocking stream the backend
// owns. Memory comes from one pool cudaMalloc'd at construction and carved
// by DeviceArena, so the step loop never calls cudaMalloc and an OOM names
// the request and what is left. Scratch for the kernels that need it
// (rmsnorm dw partials, cross-entropy stats, attention D) is one buffer from
// the pool, grown on demand; reuse is safe because everything is stream-ordered.
// No CUDA headers here: the handle types are forward-declared.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>

#include "backend/backend.hpp"
#include "backend/cuda/device_arena.hpp"

struct CUstream_st;    // cudaStream_t is CUstream_st*
struct cublasContext;  // cublasHandle_t is cublasContext*
struct cublasLtContext;  // cublasLtHandle_t is cublasLtContext*

namespace llamaft {

// False (never throws) when there is no driver or no device.
bool cuda_device_available();

// Default pool: the device's free memory less a reserve of max(2 GiB, total/32)
// for the CUDA context, cuBLAS, NCCL and other libraries (half the free
// memory when that leaves too little).
size_t cuda_default_pool_bytes(size_t free_bytes, size_t total_bytes);

class CudaBackend final : public Backend {
 public:
  // pool_bytes == 0: cuda_default_pool_bytes of what is free now.
  explicit CudaBackend(int device, size_t pool_bytes = 0);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override;
  int device() const { return device_; }
  CUstream_st* stream() const { return stream_; }  // for NCCL on the same stream
  const DeviceArena& arena() const { return arena_; }
  // bf16 GEMMs with fp32 inputs, outputs and accumulation (PyTorch autocast's
  // semantics for matmuls): each operand is rounded to bf16 into a scratch
  // buffer right before a cuBLASLt bf16 x bf16 -> fp32 GEMM on the tensor
  // cores. Storage stays fp32. train.param_dtype = bf16 turns it on.
  void set_bf16_gemm(bool on) { bf16_gemm_ = on; }
  bool bf16_gemm() const { return bf16_gemm_; }

  void* alloc_bytes(size_t bytes) override;
  void free_bytes(void* p) override;
  void to_device(void* dst, const void* src, size_t bytes) override;
  void to_host(void* dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void fill(float* p, float value, size_t n) override;
  void synchronize() override;

  void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
            int ldb, float beta, float* c, int ldc) override;
  void axpy(float alpha, const float* x, float* y, size_t n) override;
  double sum(const float* x, size_t n) override;
  double sum_squares(const float* x, size_t n) override;
  void scale(float* x, float alpha, size_t n) override;
  void adamw(float* p, float* m, float* v, const float* g, size_t n, const rowmath::AdamWParams& a) override;

  void embedding_fwd(const int32_t* ids, const float* table, float* out, int n, int dim) override;
  void embedding_bwd(const int32_t* ids, const float* dout, float* dtable, int n, int dim) override;
  void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int rows, int dim, float eps) override;
  void rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw, int rows,
                   int dim) override;
  void rope(float* x, int ld, const int32_t* positions, const float* inv_freq, int rows, int n_heads, int head_dim,
            bool inverse) override;
  void swiglu_fwd(const float* gate, const float* up, int ld_in, float* out, int rows, int n) override;
  void swiglu_bwd(const float* dout, const float* gate, const float* up, int ld_in, float* dgate, float* dup,
                  int ld_dgrad, int rows, int n) override;
  void attention_fwd(const AttnShape& s, const float* q, const float* k, const float* v, float* out,
                     float* lse) override;
  void attention_bwd(const AttnShape& s, const float* q, const float* k, const float* v, const float* out,
                     const float* lse, const float* dout, float* dq, float* dk, float* dv) override;
  void cross_entropy_rows(float* logits, const int32_t* labels, float* loss, int rows, int vocab,
                          float scale) override;
  void dropout(const float* x, float* out, int rows, int cols, int seq, const uint64_t* row_keys, uint64_t salt,
               float p) override;
  void dequantize_unit(const quant::UnitCodec& codec, const float* regions, float* out) override;
  void pack_bf16(const float* x, float* words, size_t n) override;
  void unpack_bf16(const float* words, size_t stride_words, float* out, size_t n, int rows) override;

 private:
  void* pool_alloc(size_t bytes, const char* what);  // throws a user error on OOM
  float* scratch(size_t floats);                     // valid until the next scratch() call
  double reduce(const float* x, size_t n, bool squares);

  int device_ = 0;
  CUstream_st* stream_ = nullptr;
  cublasContext* blas_ = nullptr;
  cublasLtContext* lt_ = nullptr;
  struct LtCache;                   // per-shape matmul descriptors and algorithms
  std::unique_ptr<LtCache> lt_cache_;
  void* pool_ = nullptr;
  DeviceArena arena_;
  void* blas_workspace_ = nullptr;  // (kBlasWorkspaceBytes) from the pool
  double* reduce_buf_ = nullptr;    // partials + result, from the pool
  double* host_result_ = nullptr;   // pinned
  float* scratch_ = nullptr;
  size_t scratch_floats_ = 0;
  // Quantized bases: the 8-bit dynamic map and each codec's item table, made
  // once on first use; dropout keys, grown on demand.
  float* dynamic_map_ = nullptr;
  std::map<const quant::UnitCodec*, void*> codec_items_;
  uint64_t* dropout_keys_ = nullptr;
  size_t dropout_keys_cap_ = 0;
  bool bf16_gemm_ = false;
  uint16_t* bf16_ops_[2] = {nullptr, nullptr};  // bf16 copies of the two GEMM operands, grown on demand
  size_t bf16_ops_cap_[2] = {0, 0};
};

// pool_bytes == 0 picks cuda_default_pool_bytes.
std::unique_ptr<Backend> make_cuda_backend(int device, size_t pool_bytes = 0);

}  // namespace llamaft
