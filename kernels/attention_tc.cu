// Causal GQA attention in bf16 on the tensor cores: FlashAttention-2's
// forward and backward with WMMA 16x16x16 bf16 tiles and fp32 accumulation,
// for head_dim 64 and 128 (every Llama 3 size); attention.cu's SIMT kernels
// serve fp32 and the other head dims. Semantics are attention.cuh's.
//
// A block is 4 warps over 64 rows (queries in the forward and dQ, keys in
// dK/dV); each warp owns 16 of them and walks tiles of 64 columns. Tiles are
// staged in shared memory as bf16 (zero-padded past the sequence and the
// head); a warp's scores go through shared memory as fp32 for the softmax,
// done on the CUDA cores in the log2 domain (exp2f), two lanes per row, and
// come back as bf16 P or dS for the next product. The forward keeps O in
// accumulator fragments and rescales it through shared memory when the row
// maximum moves. dQ, and dK/dV per kv head (every query head of its group,
// so GQA needs no atomics), are separate kernels, as in attention.cu; the
// backward recomputes P from the forward's log-sum-exp. Deterministic.
#include <cuda_bf16.h>
#include <mma.h>

#include <type_traits>

#include "attention.cuh"
#include "attention_mask.cuh"
#include "cuda_common.cuh"

namespace llamaft::cuda {

namespace {

namespace wmma = nvcuda::wmma;
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

constexpr int kThreads = 128;  // 4 warps
constexpr int kRows = 64;      // rows per block: 16 per warp
constexpr int kCols = 64;      // columns per tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Shared-memory row strides, padded against bank conflicts and kept at
// multiples of 16 bytes (WMMA's ldm) with 32-byte aligned 16-row steps.
template <int HD>
struct Tc {
  static constexpr int kLdh = HD + 8;     // bf16 per row of a (64, HD) head tile
  static constexpr int kLds = kCols + 4;  // floats per row of a warp's (16, 64) scores
  static constexpr int kLdp = kCols + 8;  // bf16 per row of a warp's (16, 64) P or dS
  static constexpr int kLdo = HD + 4;     // floats per row of a warp's (16, HD) output staging
  static constexpr size_t kTile = size_t(kRows) * kLdh * sizeof(bf16);
  static constexpr size_t kScores = size_t(16) * kLds * sizeof(float);
  static constexpr size_t kProbs = size_t(16) * kLdp * sizeof(bf16);
  static constexpr size_t kOut = size_t(16) * kLdo * sizeof(float);
  static_assert(kLdh % 8 == 0, "16-byte staging chunks stay aligned");
  static_assert(kTile % 128 == 0 && kScores % 32 == 0 && kProbs % 32 == 0 && kOut % 32 == 0, "alignment");
  // forward: Q, K, V tiles; per warp scores, P, O staging
  static constexpr size_t kFwdBytes = 3 * kTile + 4 * (kScores + kProbs + kOut);
  // dQ: Q, dO, K, V tiles; per warp S, dP, dS (the output staging reuses K and V)
  static constexpr size_t kDqBytes = 4 * kTile + 4 * (2 * kScores + kProbs);
  // dK/dV: K, V, Q, dO tiles; per-row lse and D; per warp S^T, dP^T, P^T, dS^T (staging reuses Q and dO)
  static constexpr size_t kDkdvBytes = 4 * kTile + 2 * kRows * sizeof(float) + 4 * (2 * kScores + 2 * kProbs);
  static_assert(4 * kOut <= 2 * kTile, "output staging fits in two tiles");
};

__device__ __forceinline__ const __nv_bfloat16* nv(const bf16* p) { return reinterpret_cast<const __nv_bfloat16*>(p); }

// dst(kRows, ld) <- rows [row0, row0 + kRows) of src (row stride lds, at the
// head's first column), zero past n_valid rows and hd columns.
// 16-byte chunks (8 bf16) when the source rows allow it, as they do for the
// model's QKV layouts; element by element otherwise.
struct alignas(16) Chunk {
  uint32_t w[4];
};
template <int HD>
__device__ __forceinline__ void stage(bf16* dst, const bf16* src, int lds, size_t row0, int n_valid, int hd) {
  const bool vector = hd == HD && lds % 8 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0;
  if (vector) {
    constexpr int kPerRow = HD / 8;
    for (int i = threadIdx.x; i < kRows * kPerRow; i += kThreads) {
      const int r = i / kPerRow, c = i % kPerRow;
      Chunk v{};
      if (r < n_valid) v = *reinterpret_cast<const Chunk*>(src + (row0 + r) * size_t(lds) + c * 8);
      *reinterpret_cast<Chunk*>(dst + r * Tc<HD>::kLdh + c * 8) = v;
    }
    return;
  }
  for (int i = threadIdx.x; i < kRows * HD; i += kThreads) {
    const int r = i / HD, d = i % HD;
    dst[r * Tc<HD>::kLdh + d] = (r < n_valid && d < hd) ? src[(row0 + r) * size_t(lds) + d] : bf16(0.f);
  }
}

// out(16, 16 * n_frags) += A(16, 16 * k_steps) B: A from shared memory (row-major bf16, lda), B either row-major
// (k, n) at b[k * ldb + n] or its transpose stored as rows (n, k) at b[n * ldb + k].
template <int kSteps, int kFrags, bool kBTransposed>
__device__ __forceinline__ void mma_tile(FragC (&out)[kFrags], const bf16* a, int lda, const bf16* b, int ldb) {
#pragma unroll
  for (int kk = 0; kk < kSteps; ++kk) {
    FragA fa;
    wmma::load_matrix_sync(fa, nv(a + kk * 16), lda);
#pragma unroll
    for (int n = 0; n < kFrags; ++n) {
      if constexpr (kBTransposed) {
        FragBCol fb;
        wmma::load_matrix_sync(fb, nv(b + size_t(n) * 16 * ldb + kk * 16), ldb);
        wmma::mma_sync(out[n], fa, fb, out[n]);
      } else {
        FragBRow fb;
        wmma::load_matrix_sync(fb, nv(b + size_t(kk) * 16 * ldb + n * 16), ldb);
        wmma::mma_sync(out[n], fa, fb, out[n]);
      }
    }
  }
}

template <int kFrags>
__device__ __forceinline__ void zero(FragC (&f)[kFrags]) {
#pragma unroll
  for (int n = 0; n < kFrags; ++n) wmma::fill_fragment(f[n], 0.f);
}

template <int kFrags>
__device__ __forceinline__ void store(float* dst, int ld, const FragC (&f)[kFrags]) {
#pragma unroll
  for (int n = 0; n < kFrags; ++n) wmma::store_matrix_sync(dst + n * 16, f[n], ld, wmma::mem_row_major);
}

// ---- forward ---------------------------------------------------------------------------
// Grid (ceil(Tq / 64), n_heads, B).
template <int HD>
__global__ void __launch_bounds__(kThreads)
    attention_fwd_tc_kernel(AttnShape s, const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse) {
  using L = Tc<HD>;
  extern __shared__ __align__(128) uint8_t smem[];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  bf16* qs = reinterpret_cast<bf16*>(smem);
  bf16* ks = reinterpret_cast<bf16*>(smem + L::kTile);
  bf16* vs = reinterpret_cast<bf16*>(smem + 2 * L::kTile);
  uint8_t* mine = smem + 3 * L::kTile + warp * (L::kScores + L::kProbs + L::kOut);
  float* sw = reinterpret_cast<float*>(mine);                             // (16, kLds) scores
  bf16* pw = reinterpret_cast<bf16*>(mine + L::kScores);                 // (16, kLdp) P
  float* ow = reinterpret_cast<float*>(mine + L::kScores + L::kProbs);   // (16, kLdo) O staging

  const int t0 = blockIdx.x * kRows, h = blockIdx.y, b = blockIdx.z;
  const int hd = s.head_dim, g = h / (s.n_heads / s.n_kv_heads);
  const size_t qrow0 = size_t(b) * s.tq + t0, krow0 = size_t(b) * s.tk;
  stage<HD>(qs, q + size_t(h) * hd, s.ldq, qrow0, s.tq - t0, hd);
  const int first = tile_first_key(s, b, t0, kRows);
  const int last = min(s.tk, s.q_offset + min(t0 + kRows, s.tq));  // one past the last key any row sees

  // Lane pair (2r, 2r+1) owns row r of the warp's 16, columns [32 half, 32 half + 32) of each tile.
  const int r = lane / 2, half = lane % 2, t = t0 + warp * 16 + r;
  int lo, hi;
  key_range(s, b, t, lo, hi);
  const float sl2 = s.scale * kLog2e;
  float row_max = -INFINITY, row_sum = 0.f;
  FragC o[HD / 16];
  zero(o);

  for (int j0 = first; j0 < last; j0 += kCols) {
    __syncthreads();  // every warp is done with the previous K and V (and qs is complete)
    stage<HD>(ks, k + size_t(g) * hd, s.ldk, krow0 + j0, last - j0, hd);
    stage<HD>(vs, v + size_t(g) * hd, s.ldv, krow0 + j0, last - j0, hd);
    __syncthreads();
    FragC sc[kCols / 16];
    zero(sc);
    mma_tile<HD / 16, kCols / 16, true>(sc, qs + warp * 16 * L::kLdh, L::kLdh, ks, L::kLdh);
    store(sw, L::kLds, sc);
    store(ow, L::kLdo, o);
    __syncwarp();

    float x[32], tile_max = -INFINITY;
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const int j = j0 + half * 32 + c;
      x[c] = (j >= lo && j < hi) ? sw[r * L::kLds + half * 32 + c] * sl2 : -INFINITY;
      tile_max = fmaxf(tile_max, x[c]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 1));
    const float new_max = fmaxf(row_max, tile_max);
    const float ref = new_max == -INFINITY ? 0.f : new_max;  // a row that has seen nothing yet stays empty
    const float alpha = exp2f(row_max - ref);
    float tile_sum = 0.f;
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const float p = exp2f(x[c] - ref);
      tile_sum += p;
      pw[r * L::kLdp + half * 32 + c] = bf16(p);
    }
    tile_sum += __shfl_xor_sync(kFullMask, tile_sum, 1);
    row_sum = row_sum * alpha + tile_sum;
    row_max = new_max;
    for (int d = half * (HD / 2); d < (half + 1) * (HD / 2); ++d) ow[r * L::kLdo + d] *= alpha;
    __syncwarp();
#pragma unroll
    for (int n = 0; n < HD / 16; ++n) wmma::load_matrix_sync(o[n], ow + n * 16, L::kLdo, wmma::mem_row_major);
    mma_tile<kCols / 16, HD / 16, false>(o, pw, L::kLdp, vs, L::kLdh);
  }

  store(ow, L::kLdo, o);
  __syncwarp();
  if (t < s.tq) {
    // A row that saw no key (possible only with doc_start) gets out 0 and lse -inf, as on the CPU.
    const float inv = row_sum > 0.f ? 1.f / row_sum : 0.f;
    bf16* orow = out + (size_t(b) * s.tq + t) * s.ldo + size_t(h) * hd;
    for (int d = half; d < hd; d += 2) orow[d] = bf16(ow[r * L::kLdo + d] * inv);
    if (half == 0)
      lse[(size_t(b) * s.n_heads + h) * s.tq + t] = row_sum > 0.f ? (row_max + log2f(row_sum)) * kLn2 : -INFINITY;
  }
}

// ---- backward: dQ ------------------------------------------------------------------------
// dQ = scale * dS K, dS = P * (dO V^T - D), P = exp(scale q.k - lse). Grid (ceil(Tq / 64), n_heads, B).
template <int HD>
__global__ void __launch_bounds__(kThreads)
    attention_dq_tc_kernel(AttnShape s, const bf16* q, const bf16* k, const bf16* v, const float* lse,
                           const float* dsum, const bf16* dout, bf16* dq) {
  using L = Tc<HD>;
  extern __shared__ __align__(128) uint8_t smem[];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  bf16* qs = reinterpret_cast<bf16*>(smem);
  bf16* dos = reinterpret_cast<bf16*>(smem + L::kTile);
  bf16* ks = reinterpret_cast<bf16*>(smem + 2 * L::kTile);
  bf16* vs = reinterpret_cast<bf16*>(smem + 3 * L::kTile);
  uint8_t* mine = smem + 4 * L::kTile + warp * (2 * L::kScores + L::kProbs);
  float* sw = reinterpret_cast<float*>(mine);                       // (16, kLds) S
  float* dpw = reinterpret_cast<float*>(mine + L::kScores);         // (16, kLds) dO V^T
  bf16* dsw = reinterpret_cast<bf16*>(mine + 2 * L::kScores);      // (16, kLdp) dS

  const int t0 = blockIdx.x * kRows, h = blockIdx.y, b = blockIdx.z;
  const int hd = s.head_dim, g = h / (s.n_heads / s.n_kv_heads);
  const size_t qrow0 = size_t(b) * s.tq + t0, krow0 = size_t(b) * s.tk;
  stage<HD>(qs, q + size_t(h) * hd, s.ldq, qrow0, s.tq - t0, hd);
  stage<HD>(dos, dout + size_t(h) * hd, s.ldo, qrow0, s.tq - t0, hd);
  const int first = tile_first_key(s, b, t0, kRows);
  const int last = min(s.tk, s.q_offset + min(t0 + kRows, s.tq));

  const int r = lane / 2, half = lane % 2, t = t0 + warp * 16 + r;
  int lo, hi;
  key_range(s, b, t, lo, hi);
  const size_t stat = (size_t(b) * s.n_heads + h) * s.tq + t;
  const float lse2 = t < s.tq ? lse[stat] * kLog2e : 0.f, row_d = t < s.tq ? dsum[stat] : 0.f;
  const float sl2 = s.scale * kLog2e;
  FragC acc[HD / 16];
  zero(acc);

  for (int j0 = first; j0 < last; j0 += kCols) {
    __syncthreads();
    stage<HD>(ks, k + size_t(g) * hd, s.ldk, krow0 + j0, last - j0, hd);
    stage<HD>(vs, v + size_t(g) * hd, s.ldv, krow0 + j0, last - j0, hd);
    __syncthreads();
    FragC sc[kCols / 16], dp[kCols / 16];
    zero(sc);
    zero(dp);
    mma_tile<HD / 16, kCols / 16, true>(sc, qs + warp * 16 * L::kLdh, L::kLdh, ks, L::kLdh);
    mma_tile<HD / 16, kCols / 16, true>(dp, dos + warp * 16 * L::kLdh, L::kLdh, vs, L::kLdh);
    store(sw, L::kLds, sc);
    store(dpw, L::kLds, dp);
    __syncwarp();
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const int col = half * 32 + c, j = j0 + col;
      const float p = (j >= lo && j < hi) ? exp2f(sw[r * L::kLds + col] * sl2 - lse2) : 0.f;
      dsw[r * L::kLdp + col] = bf16(p * (dpw[r * L::kLds + col] - row_d));
    }
    __syncwarp();
    mma_tile<kCols / 16, HD / 16, false>(acc, dsw, L::kLdp, ks, L::kLdh);
  }

  __syncthreads();  // K and V become the output staging
  float* ow = reinterpret_cast<float*>(smem + 2 * L::kTile) + warp * 16 * L::kLdo;
  store(ow, L::kLdo, acc);
  __syncwarp();
  if (t < s.tq) {
    bf16* row = dq + (size_t(b) * s.tq + t) * s.ldq + size_t(h) * hd;
    for (int d = half; d < hd; d += 2) row[d] = bf16(s.scale * ow[r * L::kLdo + d]);
  }
}

// ---- backward: dK and dV -------------------------------------------------------------------
// dV = P^T dO and dK = scale * dS^T Q for 64 keys of one kv head, over every
// query head of its group and every query tile that can see them.
// Grid (ceil(Tk / 64), n_kv_heads, B).
template <int HD>
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_tc_kernel(AttnShape s, const bf16* q, const bf16* k, const bf16* v, const float* lse,
                             const float* dsum, const bf16* dout, bf16* dk, bf16* dv) {
  using L = Tc<HD>;
  extern __shared__ __align__(128) uint8_t smem[];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  bf16* ks = reinterpret_cast<bf16*>(smem);
  bf16* vs = reinterpret_cast<bf16*>(smem + L::kTile);
  bf16* qs = reinterpret_cast<bf16*>(smem + 2 * L::kTile);
  bf16* dos = reinterpret_cast<bf16*>(smem + 3 * L::kTile);
  float* q_lse2 = reinterpret_cast<float*>(smem + 4 * L::kTile);  // (64) lse * log2(e) of the query tile
  float* q_d = q_lse2 + kRows;                                     // (64) D of the query tile
  uint8_t* mine = smem + 4 * L::kTile + 2 * kRows * sizeof(float) + warp * (2 * L::kScores + 2 * L::kProbs);
  float* sw = reinterpret_cast<float*>(mine);                                    // (16 keys, kLds) S^T
  float* dpw = reinterpret_cast<float*>(mine + L::kScores);                      // (16 keys, kLds) V dO^T
  bf16* pw = reinterpret_cast<bf16*>(mine + 2 * L::kScores);                    // (16 keys, kLdp) P^T
  bf16* dsw = reinterpret_cast<bf16*>(mine + 2 * L::kScores + L::kProbs);       // (16 keys, kLdp) dS^T

  const int j0 = blockIdx.x * kRows, g = blockIdx.y, b = blockIdx.z;
  const int hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
  const size_t krow0 = size_t(b) * s.tk + j0;
  stage<HD>(ks, k + size_t(g) * hd, s.ldk, krow0, s.tk - j0, hd);
  stage<HD>(vs, v + size_t(g) * hd, s.ldv, krow0, s.tk - j0, hd);
  const int r = lane / 2, half = lane % 2, j = j0 + warp * 16 + r;  // this lane pair's key
  const float sl2 = s.scale * kLog2e;
  FragC dk_acc[HD / 16], dv_acc[HD / 16];
  zero(dk_acc);
  zero(dv_acc);
  // Query t sees key j only if q_offset + t >= j: tiles before that are skipped.
  const int t_begin = max(0, j0 - s.q_offset) / kRows * kRows;

  for (int h = g * group; h < (g + 1) * group; ++h) {
    for (int t0 = t_begin; t0 < s.tq; t0 += kRows) {
      __syncthreads();  // every warp is done with the previous Q, dO and statistics
      const size_t qrow0 = size_t(b) * s.tq + t0;
      stage<HD>(qs, q + size_t(h) * hd, s.ldq, qrow0, s.tq - t0, hd);
      stage<HD>(dos, dout + size_t(h) * hd, s.ldo, qrow0, s.tq - t0, hd);
      if (threadIdx.x < kRows) {
        const int tt = t0 + threadIdx.x;
        const size_t stat = (size_t(b) * s.n_heads + h) * s.tq + tt;
        q_lse2[threadIdx.x] = tt < s.tq ? lse[stat] * kLog2e : 0.f;
        q_d[threadIdx.x] = tt < s.tq ? dsum[stat] : 0.f;
      }
      __syncthreads();
      FragC sc[kCols / 16], dp[kCols / 16];
      zero(sc);
      zero(dp);
      mma_tile<HD / 16, kCols / 16, true>(sc, ks + warp * 16 * L::kLdh, L::kLdh, qs, L::kLdh);
      mma_tile<HD / 16, kCols / 16, true>(dp, vs + warp * 16 * L::kLdh, L::kLdh, dos, L::kLdh);
      store(sw, L::kLds, sc);
      store(dpw, L::kLds, dp);
      __syncwarp();
#pragma unroll 4
      for (int c = 0; c < 32; ++c) {
        const int col = half * 32 + c, tt = t0 + col;
        int lo, hi;
        key_range(s, b, tt, lo, hi);
        const float p = (j >= lo && j < hi) ? exp2f(sw[r * L::kLds + col] * sl2 - q_lse2[col]) : 0.f;
        pw[r * L::kLdp + col] = bf16(p);
        dsw[r * L::kLdp + col] = bf16(p * (dpw[r * L::kLds + col] - q_d[col]));
      }
      __syncwarp();
      mma_tile<kCols / 16, HD / 16, false>(dv_acc, pw, L::kLdp, dos, L::kLdh);
      mma_tile<kCols / 16, HD / 16, false>(dk_acc, dsw, L::kLdp, qs, L::kLdh);
    }
  }

  __syncthreads();  // Q and dO become the output staging
  float* ow = reinterpret_cast<float*>(smem + 2 * L::kTile) + warp * 16 * L::kLdo;
  const bool real = j < s.tk;
  bf16* dkrow = dk + (size_t(b) * s.tk + j) * s.ldk + size_t(g) * hd;
  bf16* dvrow = dv + (size_t(b) * s.tk + j) * s.ldv + size_t(g) * hd;
  store(ow, L::kLdo, dk_acc);
  __syncwarp();
  if (real)
    for (int d = half; d < hd; d += 2) dkrow[d] = bf16(s.scale * ow[r * L::kLdo + d]);
  __syncwarp();
  store(ow, L::kLdo, dv_acc);
  __syncwarp();
  if (real)
    for (int d = half; d < hd; d += 2) dvrow[d] = bf16(ow[r * L::kLdo + d]);
}

template <typename F>
void with_tc_head_dim(int hd, F&& f) {
  if (hd == 64)
    f(std::integral_constant<int, 64>{});
  else
    f(std::integral_constant<int, 128>{});
}

}  // namespace

bool attention_tc_supported(int head_dim) { return head_dim == 64 || head_dim == 128; }

void attention_fwd_tc(const AttnShape& s, const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse,
                      cudaStream_t stream) {
  LLAMAFT_CHECK(attention_tc_supported(s.head_dim), "attention_fwd_tc: head_dim ", s.head_dim);
  with_tc_head_dim(s.head_dim, [&](auto tag) {
    constexpr int HD = decltype(tag)::value;
    auto* kernel = attention_fwd_tc_kernel<HD>;
    opt_in_shared_memory(kernel, Tc<HD>::kFwdBytes, "bf16 attention (forward)");
    const dim3 grid(blocks_for(s.tq, kRows), s.n_heads, s.batch);
    kernel<<<grid, kThreads, Tc<HD>::kFwdBytes, stream>>>(s, q, k, v, out, lse);
    LLAMAFT_LAUNCH_CHECK();
  });
}

void attention_bwd_tc(const AttnShape& s, const bf16* q, const bf16* k, const bf16* v, const float* lse,
                      const float* dsum, const bf16* dout, bf16* dq, bf16* dk, bf16* dv, cudaStream_t stream) {
  LLAMAFT_CHECK(attention_tc_supported(s.head_dim), "attention_bwd_tc: head_dim ", s.head_dim);
  with_tc_head_dim(s.head_dim, [&](auto tag) {
    constexpr int HD = decltype(tag)::value;
    if (s.tq > 0) {
      auto* kernel = attention_dq_tc_kernel<HD>;
      opt_in_shared_memory(kernel, Tc<HD>::kDqBytes, "bf16 attention (dQ)");
      const dim3 grid(blocks_for(s.tq, kRows), s.n_heads, s.batch);
      kernel<<<grid, kThreads, Tc<HD>::kDqBytes, stream>>>(s, q, k, v, lse, dsum, dout, dq);
      LLAMAFT_LAUNCH_CHECK();
    }
    if (s.tk > 0) {
      auto* kernel = attention_dkdv_tc_kernel<HD>;
      opt_in_shared_memory(kernel, Tc<HD>::kDkdvBytes, "bf16 attention (dK/dV)");
      const dim3 grid(blocks_for(s.tk, kRows), s.n_kv_heads, s.batch);
      kernel<<<grid, kThreads, Tc<HD>::kDkdvBytes, stream>>>(s, q, k, v, lse, dsum, dout, dk, dv);
      LLAMAFT_LAUNCH_CHECK();
    }
  });
}

}  // namespace llamaft::cuda
