// The CUDA backend: fp32 or bf16 storage (the kernels in kernels/ are
// templated on the storage type and compute in fp32), cuBLASLt GEMMs with the
// heuristic's algorithm cached per shape, dtypes and pointer alignment (fp32
// operands: fp32 SIMT kernels, no TF32; bf16 operands: tensor cores with
// fp32 accumulation, bf16 or fp32 output), the kernels for everything else,
// all on one non-blocking stream the backend owns. Memory comes from one pool cudaMalloc'd at construction and carved
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
#include <vector>

#include "backend/backend.hpp"
#include "backend/cuda/device_arena.hpp"

struct CUstream_st;    // cudaStream_t is CUstream_st*
struct cublasContext;  // cublasHandle_t is cublasContext*
struct cublasLtContext;  // cublasLtHandle_t is cublasLtContext*

namespace llamaft {

// What this process can use: a device, none (no driver library, or a driver
// with no devices: a machine without a GPU), or an error (a driver too old
// for this runtime, a broken install), with the CUDA error in words.
struct CudaProbe {
  bool available = false;
  std::string error;  // non-empty: CUDA is installed here but unusable
};
CudaProbe probe_cuda();
// The rule probe_cuda applies, for tests: `error` is cudaGetDeviceCount's result.
CudaProbe classify_cuda_probe(int error, const char* error_text, int devices, bool driver_library_present);
// probe_cuda().available (never throws).
bool cuda_device_available();

// cudaSetDevice(local_rank % visible devices) and returns that device; a user
// error naming the host when this process sees no CUDA device.
int pick_local_device(int local_rank);
// GPUs visible to this process (0 when none or on error).
int cuda_device_count();

// Default pool: the device's free memory less a reserve of max(2 GiB, total/32)
// for the CUDA context, cuBLAS and other libraries, plus 2 GiB for each NCCL
// communicator the job will create (the pool is reserved before NCCL
// initialises, and NCCL's buffers, NVLS ones above all, take about that;
// half the free memory when that leaves too little).
constexpr size_t kNcclReservePerComm = size_t(2) << 30;
size_t cuda_default_pool_bytes(size_t free_bytes, size_t total_bytes, int nccl_comms = 0);

class CudaBackend final : public Backend {
 public:
  // pool_bytes == 0: cuda_default_pool_bytes of what is free now, leaving
  // room for nccl_comms NCCL communicators.
  explicit CudaBackend(int device, size_t pool_bytes = 0, int nccl_comms = 0);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override;
  int device() const { return device_; }
  CUstream_st* stream() const { return stream_; }  // for NCCL on the same stream
  void* native_stream() const override { return stream_; }
  int device_ordinal() const override { return device_; }
  const DeviceArena& arena() const { return arena_; }

  void* alloc_bytes(size_t bytes) override;
  void free_bytes(void* p) override;
  // Stream-ordered: src is staged in pinned memory, so it may be reused at
  // once and the call does not wait for the device.
  void to_device(void* dst, const void* src, size_t bytes) override;
  void to_device_mirrored(void* dst, const void* src, size_t bytes) override;
  StepCounters* counters() override { return &counters_; }
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
  double sum_squares_many(const float* const* xs, const size_t* ns, int count) override;
  void adamw_many(const AdamWShard* shards, int count, const rowmath::AdamWParams& a) override;

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

  bool has_bf16_storage() const override { return true; }
  std::string bf16_gemm_name() const override { return "cuBLASLt, tensor cores"; }
  void fill(bf16* p, float value, size_t n) override;
  void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const bf16* a, int lda, const bf16* b,
            int ldb, float beta, bf16* c, int ldc) override;
  void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const bf16* a, int lda, const bf16* b,
            int ldb, float beta, float* c, int ldc) override;
  void axpy(float alpha, const bf16* x, bf16* y, size_t n) override;
  void embedding_fwd(const int32_t* ids, const bf16* table, bf16* out, int n, int dim) override;
  void embedding_bwd(const int32_t* ids, const bf16* dout, float* dtable, int n, int dim) override;
  void rmsnorm_fwd(const bf16* x, const bf16* w, bf16* y, float* rstd, int rows, int dim, float eps) override;
  void rmsnorm_bwd(const bf16* dy, const bf16* x, const bf16* w, const float* rstd, bf16* dx, float* dw, int rows,
                   int dim) override;
  void rope(bf16* x, int ld, const int32_t* positions, const float* inv_freq, int rows, int n_heads, int head_dim,
            bool inverse) override;
  void swiglu_fwd(const bf16* gate, const bf16* up, int ld_in, bf16* out, int rows, int n) override;
  void swiglu_bwd(const bf16* dout, const bf16* gate, const bf16* up, int ld_in, bf16* dgate, bf16* dup,
                  int ld_dgrad, int rows, int n) override;
  void attention_fwd(const AttnShape& s, const bf16* q, const bf16* k, const bf16* v, bf16* out,
                     float* lse) override;
  void attention_bwd(const AttnShape& s, const bf16* q, const bf16* k, const bf16* v, const bf16* out,
                     const float* lse, const bf16* dout, bf16* dq, bf16* dk, bf16* dv) override;
  void cross_entropy_rows(bf16* logits, const int32_t* labels, float* loss, int rows, int vocab,
                          float scale) override;
  void dropout(const bf16* x, bf16* out, int rows, int cols, int seq, const uint64_t* row_keys, uint64_t salt,
               float p) override;
  void unpack_bf16(const float* words, size_t stride_words, bf16* out, size_t n, int rows) override;
  void dequantize_unit(const quant::UnitCodec& codec, const float* regions, bf16* out) override;

 private:
  struct Tally;        // counts one op into counters_ (cuda_backend.cpp)
  struct StagingRing;  // pinned upload buffers, each with its completion event
  void wait(const char* site);  // cudaStreamSynchronize, counted by site
  void* pool_alloc(size_t bytes, const char* what);  // throws a user error on OOM
  float* scratch(size_t floats);                     // valid until the next scratch() call
  double reduce(const float* x, size_t n, bool squares);
  void lt_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const void* a, int lda, const void* b, int ldb,
               float beta, void* c, int ldc, bool bf16_in, bool bf16_out);
  const uint64_t* device_dropout_keys(const uint64_t* row_keys, int rows, int seq);
  const float* dynamic_map();
  const quant::DequantItem* codec_item_table(const quant::UnitCodec& codec);
  // The embedding backward's grouping of positions by token id, on the
  // device: {rows, offsets, order} (see embedding.cuh). One small host round trip.
  const int32_t* group_by_id(const int32_t* ids, int n, int& n_rows);
  template <typename T>
  void embedding_bwd_grouped(const int32_t* ids, const T* dout, float* dtable, int n, int dim);

  StepCounters counters_;
  std::unique_ptr<StagingRing> staging_;
  struct Mirror {  // to_device_mirrored's last upload
    const void* device = nullptr;
    std::vector<unsigned char> host;
  } mirror_;
  std::vector<uint64_t> last_dropout_keys_;  // what dropout_keys_ holds now
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
  double* many_results_ = nullptr;  // sum_squares_many: one result per buffer (device, grown on demand)
  size_t many_cap_ = 0;
  std::vector<double> many_host_;
  int32_t* groups_ = nullptr;  // group_by_id's device copy, grown on demand
  size_t groups_cap_ = 0;
  std::vector<int32_t> host_ids_, host_groups_;
  float* scratch_ = nullptr;
  size_t scratch_floats_ = 0;
  // Quantized bases: the 8-bit dynamic map and each codec's item table, made
  // once on first use; dropout keys, grown on demand.
  float* dynamic_map_ = nullptr;
  std::map<const quant::UnitCodec*, void*> codec_items_;
  uint64_t* dropout_keys_ = nullptr;
  size_t dropout_keys_cap_ = 0;
};

// pool_bytes == 0 picks cuda_default_pool_bytes.
std::unique_ptr<Backend> make_cuda_backend(int device, size_t pool_bytes = 0, int nccl_comms = 0);

}  // namespace llamaft
