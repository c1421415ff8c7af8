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
  void synchronize() override;

  LLAMAFT_BACKEND_OPS(LLAMAFT_OP_OVERRIDE)
  double sum_squares_many(const float* const* xs, const size_t* ns, int count) override;
  double adamw_many(const AdamWShard* shards, int count, const rowmath::AdamWParams& a) override;

  bool has_bf16_storage() const override { return true; }
  std::string bf16_gemm_name() const override { return "cuBLASLt, tensor cores"; }

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

  // Each op's body (cuda_backend.cpp): templates over the storage type S for
  // the storage ops, plain functions for the single-signature ones.
#define LLAMAFT_CUDA_TEMPLATE_DECL(ret, name, cuda_family, profile_family, params, args, bytes, flops) \
  template <typename S>                                                                               \
  ret name##_t params;
#define LLAMAFT_CUDA_DECL(ret, name, cuda_family, profile_family, params, args, bytes, flops) ret name##_t params;
  LLAMAFT_STORAGE_OPS(LLAMAFT_CUDA_TEMPLATE_DECL, S)
  LLAMAFT_SINGLE_OPS(LLAMAFT_CUDA_DECL)
#undef LLAMAFT_CUDA_TEMPLATE_DECL
#undef LLAMAFT_CUDA_DECL

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
