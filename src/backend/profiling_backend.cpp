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

  // Every op of the table, timed under its profile family with the table's bytes and FLOPs.
#define LLAMAFT_PROFILE_OP(ret, name, cuda_family, profile_family, params, args, bytes, flops) \
  ret name params override {                                                                  \
    return timed(profile_family, bytes, flops, [&] { return inner_->name args; });            \
  }
  LLAMAFT_BACKEND_OPS(LLAMAFT_PROFILE_OP)
#undef LLAMAFT_PROFILE_OP

  double sum_squares_many(const float* const* xs, const size_t* ns, int count) override {
    double bytes = 0;
    for (int i = 0; i < count; ++i) bytes += 4.0 * ns[i];
    return timed("sums", bytes, 0, [&] { return inner_->sum_squares_many(xs, ns, count); });
  }
  // AdamW's 28 bytes a parameter, and the updated weights' finiteness check
  // (4 more where the inner backend reads them again: the default does).
  double adamw_many(const AdamWShard* shards, int count, const rowmath::AdamWParams& a) override {
    double bytes = 0;
    for (int i = 0; i < count; ++i) bytes += 28.0 * shards[i].n;
    return timed("adamw", bytes, 0, [&] { return inner_->adamw_many(shards, count, a); });
  }

 private:
  // f's result, after adding its time, bytes and FLOPs to the family.
  template <typename F>
  auto timed(const char* family, double bytes, double flops, F&& f) -> decltype(f()) {
    struct Record {  // on the way out, so a value-returning f is timed the same way
      ProfilingBackend& be;
      const char* family;
      double bytes, flops;
      Clock::time_point t0 = Clock::now();
      ~Record() {
        StepCounters::Family& fam = be.counters_.ops[family];
        ++fam.calls;
        fam.bytes += bytes;
        fam.flops += flops;
        fam.seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      }
    } record{*this, family, bytes, flops};
    return f();
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
