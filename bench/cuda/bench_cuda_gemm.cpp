// The GPU's dense GEMM peak as cuBLASLt delivers it, for gpu_check.sh's MFU:
// bf16 x bf16 -> fp32 (fp32 accumulation, the training GEMMs' types) and
// fp32, square n^3 over random operands, best of several timed runs after a warm-up.
// Usage: bench_cuda_gemm [n=8192] [reps=20]   prints one JSON line
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CHECK(x)                                                                        \
  do {                                                                                  \
    if (!(x)) {                                                                         \
      std::fprintf(stderr, "bench_cuda_gemm: `%s` failed at %s:%d\n", #x, __FILE__, __LINE__); \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

// Uniform values in [-1, 1) (bf16: rounded to nearest even) from a fixed LCG, copied to the device.
static void fill_random(void* dev, cudaDataType_t type, size_t n, uint64_t seed) {
  std::vector<uint32_t> words(type == CUDA_R_16BF ? (n + 1) / 2 : n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&] {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    const float u = float(x >> 40) / float(1u << 24) * 2.f - 1.f;
    uint32_t bits;
    std::memcpy(&bits, &u, 4);
    return bits;
  };
  if (type == CUDA_R_16BF) {
    for (auto& w : words) {
      uint32_t lo = next(), hi = next();
      lo = (lo + 0x7FFF + ((lo >> 16) & 1)) >> 16;
      hi = (hi + 0x7FFF + ((hi >> 16) & 1)) >> 16;
      w = lo | (hi << 16);
    }
  } else {
    for (auto& w : words) w = next();
  }
  CHECK(cudaMemcpy(dev, words.data(), (type == CUDA_R_16BF ? 2 : 4) * n, cudaMemcpyHostToDevice) == cudaSuccess);
}

static double tflops(cublasLtHandle_t lt, cudaDataType_t in, int n, int reps, void* ws, size_t ws_bytes) {
  const size_t in_bytes = in == CUDA_R_16BF ? 2 : 4;
  void *a, *b, *c;
  CHECK(cudaMalloc(&a, in_bytes * n * n) == cudaSuccess);
  CHECK(cudaMalloc(&b, in_bytes * n * n) == cudaSuccess);
  CHECK(cudaMalloc(&c, 4ull * n * n) == cudaSuccess);
  // Random operands: all-zero matrices toggle no bits in the multipliers and
  // draw less power, which lets the clocks stay higher than under real data.
  fill_random(a, in, size_t(n) * n, 1);
  fill_random(b, in, size_t(n) * n, 2);
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;
  CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS);
  CHECK(cublasLtMatrixLayoutCreate(&la, in, n, n, n) == CUBLAS_STATUS_SUCCESS);
  CHECK(cublasLtMatrixLayoutCreate(&lb, in, n, n, n) == CUBLAS_STATUS_SUCCESS);
  CHECK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, n, n, n) == CUBLAS_STATUS_SUCCESS);
  cublasLtMatmulPreference_t pref;
  CHECK(cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS);
  const uint64_t wsb = ws_bytes;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof(wsb));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  CHECK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &res, &found) == CUBLAS_STATUS_SUCCESS &&
        found > 0);
  const float alpha = 1, beta = 0;
  cudaEvent_t t0, t1;
  cudaEventCreate(&t0);
  cudaEventCreate(&t1);
  double best = 1e30;
  for (int r = -2; r < reps; ++r) {
    cudaEventRecord(t0);
    CHECK(cublasLtMatmul(lt, op, &alpha, a, la, b, lb, &beta, c, lc, c, lc, &res.algo, ws, ws_bytes, nullptr) ==
          CUBLAS_STATUS_SUCCESS);
    cudaEventRecord(t1);
    cudaEventSynchronize(t1);
    float ms = 0;
    cudaEventElapsedTime(&ms, t0, t1);
    if (r >= 0) best = std::min(best, double(ms));
  }
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(op);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  return 2.0 * n * n * double(n) / (best * 1e-3) / 1e12;
}

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 8192;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 20;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::fprintf(stderr, "bench_cuda_gemm: no CUDA device\n");
    return 77;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  cublasLtHandle_t lt;
  CHECK(cublasLtCreate(&lt) == CUBLAS_STATUS_SUCCESS);
  const size_t ws_bytes = size_t(32) << 20;
  void* ws;
  CHECK(cudaMalloc(&ws, ws_bytes) == cudaSuccess);
  const double bf16 = tflops(lt, CUDA_R_16BF, n, reps, ws, ws_bytes);
  const double fp32 = tflops(lt, CUDA_R_32F, n, reps, ws, ws_bytes);
  std::printf("{\"gpu\": \"%s\", \"n\": %d, \"bf16_tflops\": %.1f, \"fp32_tflops\": %.1f}\n", prop.name, n, bf16, fp32);
  cudaFree(ws);
  cublasLtDestroy(lt);
  return 0;
}
