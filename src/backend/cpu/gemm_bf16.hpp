// Host GEMMs over bf16 operands with fp32 accumulation: the CPU twin of the
// CUDA backend's cuBLASLt bf16 GEMMs (train.param_dtype = bf16).
//
// Two paths, chosen once per process from the CPU's features:
//  - kOneDnn: oneDNN's matmul primitive on CPUs with AVX512-BF16 (and AMX
//    where present), which multiplies bf16 pairs in hardware (VDPBF16PS) and
//    accumulates in fp32;
//  - kWidened: every other CPU. The bf16 operands are widened to fp32, which
//    is exact, and multiplied by the fp32 SGEMM; a product of two bf16 values
//    has at most 16 significant bits, so it is exact in fp32 and the two paths
//    differ only in the order of the fp32 accumulation.
// Either way the result is alpha * op(A) op(B) + beta * C computed in fp32,
// rounded once to nearest even when C is bf16. LLAMAFT_BF16_GEMM=widened
// forces the second path (and =onednn the first, refused without AVX512-BF16).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

#include "backend/cpu/gemm.hpp"
#include "core/dtype.hpp"

namespace llamaft::cpu {

enum class Bf16GemmPath { kOneDnn, kWidened };

bool cpu_has_avx512_bf16();
Bf16GemmPath bf16_gemm_path();  // from LLAMAFT_BF16_GEMM, else the CPU's features
const char* bf16_gemm_path_name(Bf16GemmPath path);

// Row-major C(M,N) = alpha * op(A)(M,K) op(B)(K,N) + beta * C.
void gemm_bf16(Bf16GemmPath path, GemmImpl fp32_impl, bool trans_a, bool trans_b, int m, int n, int k,
               float alpha, const bf16* a, int lda, const bf16* b, int ldb, float beta, float* c, int ldc);
void gemm_bf16(Bf16GemmPath path, GemmImpl fp32_impl, bool trans_a, bool trans_b, int m, int n, int k,
               float alpha, const bf16* a, int lda, const bf16* b, int ldb, float beta, bf16* c, int ldc);

// oneDNN's matmul over fp32 operands, through the same primitive setup
// (strides, transposes, alpha as the output scale, beta as a sum post-op) as
// the bf16 path: it runs on every CPU, so the tests check that setup here
// even where the bf16 kernels cannot run.
void onednn_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                  const float* b, int ldb, float beta, float* c, int ldc);

// Widening (exact) and rounding (nearest even) of n contiguous values, on
// the calling thread: callers parallelise over rows.
inline void widen_bf16(const bf16* x, float* y, size_t n) {
  const auto* bits = reinterpret_cast<const uint16_t*>(x);
  for (size_t i = 0; i < n; ++i) y[i] = bf16_to_f32(bits[i]);
}
inline void round_to_bf16(const float* x, bf16* y, size_t n) {
  auto* bits = reinterpret_cast<uint16_t*>(y);
  for (size_t i = 0; i < n; ++i) bits[i] = f32_to_bf16(x[i]);
}

// A grow-only fp32 buffer that is never zero-filled, for staging that is
// written before it is read (std::vector::resize would value-initialise each
// time a call needs more than the last one: tens of MB per logits GEMM).
// 64-byte aligned, so it also serves as a oneDNN scratchpad.
class FloatBuf {
 public:
  float* get(size_t n) {
    if (n > cap_) {
      data_.reset(new (std::align_val_t(64)) float[n]);
      cap_ = n;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t(64)); }
  };
  std::unique_ptr<float[], Free> data_;
  size_t cap_ = 0;
};

}  // namespace llamaft::cpu
