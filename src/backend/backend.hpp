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
#include "backend/backend_ops.hpp"
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

  // ---- compute ----------------------------------------------------------------
  // Every op of backend_ops.hpp's table, each declared once there with its
  // shapes: the storage ops for fp32 and for bf16 activations, and the ops
  // with one signature. bf16 storage computes as torch FSDP's
  // MixedPrecision(param_dtype=bf16) does: every kernel does its arithmetic
  // in fp32 and rounds only what it stores; statistics (rstd, lse, per-row
  // losses) and weight gradients (the gemm with an fp32 C, rmsnorm's dw, the
  // embedding table gradient) stay fp32. The CPU backend implements them all
  // with the same rounding points, so a CPU bf16 run is the reference for a
  // GPU one.
  LLAMAFT_BACKEND_OPS(LLAMAFT_OP_PURE)

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
  // Returns the updated weights' sum of squares (finite exactly when every
  // weight is), from the same pass where the backend can: the check the
  // optimizer needs after every step, without reading the shards again.
  virtual double adamw_many(const AdamWShard* shards, int count, const rowmath::AdamWParams& a);

  // Whether this backend runs the bf16 storage ops (what supports_op answers
  // in ggml): `plan`'s counting backend implements them all but says no
  // unless asked to count bf16 activations.
  virtual bool has_bf16_storage() const = 0;
  // What runs the bf16 GEMMs, for the banner and run_info.json ("" without bf16 storage).
  virtual std::string bf16_gemm_name() const { return ""; }

  // ---- allocation accounting (implementations call these) ---------------------
 protected:
  // sum_squares_many over the shards' weights.
  double weights_sum_squares(const AdamWShard* shards, int count);
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
