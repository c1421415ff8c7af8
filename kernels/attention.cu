#include "attention.cuh"
#include "cuda_common.cuh"

namespace llamaft::cuda {

namespace {
constexpr int kTile = 128;       // keys per tile = threads per block
constexpr int kMaxHeadDim = 256;
constexpr int kPerThread = kMaxHeadDim / kTile;

__device__ float block_max(float v, float* scratch) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / kWarp ? scratch[threadIdx.x] : -INFINITY;
  if (warp == 0)
    for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (threadIdx.x == 0) scratch[0] = v;
  __syncthreads();
  return scratch[0];
}

struct RowIndex {
  int b, h, t, g;
  int lo, hi;  // allowed keys [lo, hi)
};

__device__ RowIndex row_index(const AttnShape& s) {
  RowIndex r;
  r.t = blockIdx.x % s.tq;
  r.h = (blockIdx.x / s.tq) % s.n_heads;
  r.b = blockIdx.x / (s.tq * s.n_heads);
  r.g = r.h / (s.n_heads / s.n_kv_heads);
  r.hi = min(s.tk, s.q_offset + r.t + 1);
  r.lo = s.doc_start ? s.doc_start[size_t(r.b) * s.tq + r.t] : 0;
  return r;
}

// One block per (b, h, t): scores for a tile of keys (one key per thread),
// online max/sum, and the output accumulated per head-dim element.
__global__ void attention_fwd_kernel(AttnShape s, const float* q, const float* k, const float* v, float* out,
                                     float* lse) {
  __shared__ float qs[kMaxHeadDim];
  __shared__ float p_tile[kTile];
  __shared__ float scratch[32];
  const RowIndex r = row_index(s);
  const int hd = s.head_dim;
  const float* qrow = q + (size_t(r.b) * s.tq + r.t) * s.ldq + size_t(r.h) * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = qrow[d];
  __syncthreads();
  float m = -INFINITY, l = 0.f, acc[kPerThread] = {0.f, 0.f};
  for (int j0 = r.lo; j0 < r.hi; j0 += kTile) {
    const int j = j0 + threadIdx.x;
    float score = -INFINITY;
    if (j < r.hi) {
      const float* krow = k + (size_t(r.b) * s.tk + j) * s.ldk + size_t(r.g) * hd;
      float dot = 0.f;
      for (int d = 0; d < hd; ++d) dot += qs[d] * krow[d];
      score = dot * s.scale;
    }
    const float m_new = fmaxf(m, block_max(score, scratch));
    const float p = j < r.hi ? expf(score - m_new) : 0.f;
    p_tile[threadIdx.x] = p;
    const float tile_sum = block_sum(p, scratch);
    const float correction = expf(m - m_new);
    l = l * correction + tile_sum;
    const int n = min(kTile, r.hi - j0);
    for (int e = 0; e < kPerThread; ++e) {
      const int d = threadIdx.x + e * kTile;
      if (d >= hd) break;
      float a = acc[e] * correction;
      for (int jj = 0; jj < n; ++jj) a += p_tile[jj] * v[(size_t(r.b) * s.tk + j0 + jj) * s.ldv + size_t(r.g) * hd + d];
      acc[e] = a;
    }
    m = m_new;
    __syncthreads();
  }
  float* orow = out + (size_t(r.b) * s.tq + r.t) * s.ldo + size_t(r.h) * hd;
  for (int e = 0; e < kPerThread; ++e) {
    const int d = threadIdx.x + e * kTile;
    if (d < hd) orow[d] = acc[e] / l;
  }
  if (threadIdx.x == 0) lse[(size_t(r.b) * s.n_heads + r.h) * s.tq + r.t] = m + logf(l);
}

__global__ void zero_heads_kernel(float* x, int ld, int rows, int heads_cols) {
  const size_t total = size_t(rows) * heads_cols;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x)
    x[(i / heads_cols) * ld + i % heads_cols] = 0.f;
}

// One block per (b, h, t): P recomputed from lse; dq written, dk/dv atomically accumulated.
__global__ void attention_bwd_kernel(AttnShape s, const float* q, const float* k, const float* v, const float* out,
                                     const float* lse, const float* dout, float* dq, float* dk, float* dv) {
  __shared__ float qs[kMaxHeadDim], dos[kMaxHeadDim];
  __shared__ float ds_tile[kTile];
  __shared__ float scratch[32];
  const RowIndex r = row_index(s);
  const int hd = s.head_dim;
  const size_t qrow = (size_t(r.b) * s.tq + r.t);
  float dsum = 0.f;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    qs[d] = q[qrow * s.ldq + size_t(r.h) * hd + d];
    dos[d] = dout[qrow * s.ldo + size_t(r.h) * hd + d];
    dsum += dos[d] * out[qrow * s.ldo + size_t(r.h) * hd + d];
  }
  const float D = block_sum(dsum, scratch);  // rowsum(dO * O); block_sum syncs, so qs/dos are ready
  const float row_lse = lse[(size_t(r.b) * s.n_heads + r.h) * s.tq + r.t];
  float dq_acc[kPerThread] = {0.f, 0.f};
  for (int j0 = r.lo; j0 < r.hi; j0 += kTile) {
    const int j = j0 + threadIdx.x;
    float ds = 0.f;
    if (j < r.hi) {
      const float* krow = k + (size_t(r.b) * s.tk + j) * s.ldk + size_t(r.g) * hd;
      const float* vrow = v + (size_t(r.b) * s.tk + j) * s.ldv + size_t(r.g) * hd;
      float dot = 0.f, dp = 0.f;
      for (int d = 0; d < hd; ++d) {
        dot += qs[d] * krow[d];
        dp += dos[d] * vrow[d];
      }
      const float p = expf(dot * s.scale - row_lse);
      ds = p * (dp - D);
      float* dkrow = dk + (size_t(r.b) * s.tk + j) * s.ldk + size_t(r.g) * hd;
      float* dvrow = dv + (size_t(r.b) * s.tk + j) * s.ldv + size_t(r.g) * hd;
      for (int d = 0; d < hd; ++d) {
        atomicAdd(dkrow + d, s.scale * ds * qs[d]);
        atomicAdd(dvrow + d, p * dos[d]);
      }
    }
    ds_tile[threadIdx.x] = ds;
    __syncthreads();
    const int n = min(kTile, r.hi - j0);
    for (int e = 0; e < kPerThread; ++e) {
      const int d = threadIdx.x + e * kTile;
      if (d >= hd) break;
      float a = dq_acc[e];
      for (int jj = 0; jj < n; ++jj) a += ds_tile[jj] * k[(size_t(r.b) * s.tk + j0 + jj) * s.ldk + size_t(r.g) * hd + d];
      dq_acc[e] = a;
    }
    __syncthreads();
  }
  for (int e = 0; e < kPerThread; ++e) {
    const int d = threadIdx.x + e * kTile;
    if (d < hd) dq[qrow * s.ldq + size_t(r.h) * hd + d] = s.scale * dq_acc[e];
  }
}
}  // namespace

void attention_fwd(const AttnShape& s, const float* q, const float* k, const float* v, float* out, float* lse,
                   cudaStream_t stream) {
  LLAMAFT_CHECK(s.head_dim <= kMaxHeadDim, "head_dim ", s.head_dim, " exceeds ", kMaxHeadDim);
  const unsigned blocks = unsigned(s.batch) * s.n_heads * s.tq;
  if (blocks == 0) return;
  attention_fwd_kernel<<<blocks, kTile, 0, stream>>>(s, q, k, v, out, lse);
  LLAMAFT_LAUNCH_CHECK();
}

void attention_bwd(const AttnShape& s, const float* q, const float* k, const float* v, const float* out,
                   const float* lse, const float* dout, float* dq, float* dk, float* dv, cudaStream_t stream) {
  LLAMAFT_CHECK(s.head_dim <= kMaxHeadDim, "head_dim ", s.head_dim, " exceeds ", kMaxHeadDim);
  const int rows = s.batch * s.tk, cols = s.n_kv_heads * s.head_dim;
  const unsigned zb = std::min<unsigned>(65535, blocks_for(size_t(rows) * cols, 256));
  zero_heads_kernel<<<zb, 256, 0, stream>>>(dk, s.ldk, rows, cols);
  LLAMAFT_LAUNCH_CHECK();
  zero_heads_kernel<<<zb, 256, 0, stream>>>(dv, s.ldv, rows, cols);
  LLAMAFT_LAUNCH_CHECK();
  const unsigned blocks = unsigned(s.batch) * s.n_heads * s.tq;
  if (blocks == 0) return;
  attention_bwd_kernel<<<blocks, kTile, 0, stream>>>(s, q, k, v, out, lse, dout, dq, dk, dv);
  LLAMAFT_LAUNCH_CHECK();
}

}  // namespace llamaft::cuda
