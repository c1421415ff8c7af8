// Host SGEMM with two interchangeable implementations: OpenBLAS (OpenMP
// flavour, the default) and Eigen. bench/bench_gemm.cpp measures both on the
// model's shapes; LLAMAFT_GEMM=eigen|openblas picks one at run time.
#pragma once

namespace llamaft::cpu {

enum class GemmImpl { kOpenBlas, kEigen };

GemmImpl default_gemm_impl();  // from LLAMAFT_GEMM, else OpenBLAS
const char* gemm_impl_name(GemmImpl impl);

// Row-major C(M,N) = alpha * op(A) * op(B) + beta * C.
void sgemm(GemmImpl impl, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
           const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc);

}  // namespace llamaft::cpu
