// Helpers for the CUDA tests: run an op on the CPU backend (the reference)
// and on the CUDA backend from the same seeded host inputs, and compare
// element by element with atol + rtol * |ref|, NaN/inf checks and a guard
// that the output is not all zeros.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "model/param_layout.hpp"

#include "../common/quant_units.hpp"

namespace llamaft::cuda_test {

// Skips on a machine without a GPU; fails (never skips) when CUDA is there but
// unusable (a driver too old for this runtime), or when LLAMAFT_REQUIRE_GPU=1
// (scripts/gpu_check.sh), so a GPU run cannot pass by skipping.
inline bool gpu_required() {
  const char* v = std::getenv("LLAMAFT_REQUIRE_GPU");
  return v && std::string(v) == "1";
}
#define LLAMAFT_SKIP_WITHOUT_GPU()                                                                     \
  do {                                                                                                 \
    const ::llamaft::CudaProbe probe_ = ::llamaft::probe_cuda();                                       \
    if (!probe_.available) {                                                                           \
      if (!probe_.error.empty()) FAIL() << probe_.error;                                               \
      if (::llamaft::cuda_test::gpu_required()) FAIL() << "LLAMAFT_REQUIRE_GPU=1 but no CUDA device";  \
      GTEST_SKIP() << "no CUDA device";                                                                \
    }                                                                                                  \
  } while (0)

// Small pools keep parallel test processes from fighting over the GPU.
constexpr size_t kTestPoolBytes = size_t(256) << 20;

inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

struct Tol {
  double atol, rtol;
};

// got (CUDA) against want (CPU). Infinite references (a masked row's lse)
// must match exactly; anything else non-finite fails.
inline void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& want,
                         Tol tol, bool may_be_zero = false) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0, abs_sum = 0;
  size_t at = 0, bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(want[i])) {
      if (!(got[i] == want[i])) {
        ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << ", reference " << want[i];
        if (++bad > 5) return;
      }
      continue;
    }
    if (!std::isfinite(got[i])) {
      ADD_FAILURE() << what << "[" << i << "] is " << got[i] << " (reference " << want[i] << ")";
      if (++bad > 5) return;
      continue;
    }
    const double err = std::abs(double(got[i]) - want[i]) / (tol.atol + tol.rtol * std::abs(double(want[i])));
    if (err > worst) worst = err, at = i;
    abs_sum += std::abs(got[i]);
  }
  if (!may_be_zero) {
    EXPECT_GT(abs_sum, 0.0) << what << ": output is all zeros";
  }
  EXPECT_LE(worst, 1.0) << what << ": worst element " << at << " of " << got.size() << ": got " << got[at]
                        << ", reference " << want[at] << " (atol " << tol.atol << ", rtol " << tol.rtol << ")";
}

// An attention problem with the model's scale 1/sqrt(head_dim); strides and
// doc_start are the caller's.
inline AttnShape attn_shape(int batch, int tq, int tk, int hq, int hkv, int hd, int q_offset) {
  AttnShape s;
  s.batch = batch;
  s.tq = tq;
  s.tk = tk;
  s.n_heads = hq;
  s.n_kv_heads = hkv;
  s.head_dim = hd;
  s.q_offset = q_offset;
  s.scale = 1.f / std::sqrt(float(hd));
  return s;
}

using test::make_unit;  // tests/common/quant_units.hpp

// Host inputs mirrored onto both backends; run() applies an op to each.
class Dual {
 public:
  Dual() : cpu_(make_cpu_backend()), gpu_(make_cuda_backend(0, kTestPoolBytes)) {}
  Dual(const Dual&) = delete;
  Dual& operator=(const Dual&) = delete;
  ~Dual() {
    for (auto& [c, g] : owned_) {
      cpu_->free_bytes(c);
      gpu_->free_bytes(g);
    }
  }

  template <typename T>
  struct Buf {
    T* cpu = nullptr;
    T* gpu = nullptr;
    size_t n = 0;
    T* on(bool use_gpu) const { return use_gpu ? gpu : cpu; }
  };

  template <typename T>
  Buf<T> put(const std::vector<T>& host) {
    Buf<T> b{static_cast<T*>(cpu_->alloc_bytes(host.size() * sizeof(T))),
             static_cast<T*>(gpu_->alloc_bytes(host.size() * sizeof(T))), host.size()};
    cpu_->to_device(b.cpu, host.data(), host.size() * sizeof(T));
    gpu_->to_device(b.gpu, host.data(), host.size() * sizeof(T));
    owned_.emplace_back(b.cpu, b.gpu);
    return b;
  }
  template <typename T>
  std::vector<T> cpu_values(const Buf<T>& b) {
    std::vector<T> v(b.n);
    cpu_->to_host(v.data(), b.cpu, b.n * sizeof(T));
    return v;
  }
  template <typename T>
  std::vector<T> gpu_values(const Buf<T>& b) {
    std::vector<T> v(b.n);
    gpu_->to_host(v.data(), b.gpu, b.n * sizeof(T));
    return v;
  }
  void expect_close(const std::string& what, const Buf<float>& b, Tol tol, bool may_be_zero = false) {
    cuda_test::expect_close(what, gpu_values(b), cpu_values(b), tol, may_be_zero);
  }

  void run(const std::function<void(Backend& be, bool use_gpu)>& op) {
    op(*cpu_, false);
    op(*gpu_, true);
    gpu_->synchronize();
  }
  Backend& cpu() { return *cpu_; }
  Backend& gpu() { return *gpu_; }
  CudaBackend& cuda() { return static_cast<CudaBackend&>(*gpu_); }

 private:
  std::unique_ptr<Backend> cpu_, gpu_;
  std::vector<std::pair<void*, void*>> owned_;
};

}  // namespace llamaft::cuda_test
