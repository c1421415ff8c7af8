#include "backend/cpu/gemm.hpp"

#include <cblas.h>

#include <Eigen/Core>
#include <cstdlib>
#include <cstring>

namespace llamaft::cpu {

GemmImpl default_gemm_impl() {
  static const GemmImpl impl = [] {
    const char* env = std::getenv("LLAMAFT_GEMM");
    if (env && std::strcmp(env, "eigen") == 0) return GemmImpl::kEigen;
    return GemmImpl::kOpenBlas;
  }();
  return impl;
}

const char* gemm_impl_name(GemmImpl impl) {
  return impl == GemmImpl::kEigen ? "eigen" : "openblas";
}

namespace {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;
using Map = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;

void eigen_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc) {
  // Stored shapes: A is (m,k) or (k,m) when transposed; B likewise.
  ConstMap A(a, ta ? k : m, ta ? m : k, Eigen::OuterStride<>(lda));
  ConstMap B(b, tb ? n : k, tb ? k : n, Eigen::OuterStride<>(ldb));
  Map C(c, m, n, Eigen::OuterStride<>(ldc));
  if (beta == 0.f) {
    C.setZero();
  } else if (beta != 1.f) {
    C *= beta;
  }
  if (!ta && !tb) C.noalias() += alpha * A * B;
  else if (ta && !tb) C.noalias() += alpha * A.transpose() * B;
  else if (!ta && tb) C.noalias() += alpha * A * B.transpose();
  else C.noalias() += alpha * A.transpose() * B.transpose();
}
}  // namespace

void sgemm(GemmImpl impl, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
           const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    return;
  }
  if (impl == GemmImpl::kEigen) {
    eigen_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace llamaft::cpu
