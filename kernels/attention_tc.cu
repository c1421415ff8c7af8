// Causal GQA attention in bf16 on the tensor cores, for head_dim 64 and 128
// (every Llama 3 size), FlashAttention-2's structure with mma.sync
// m16n8k16 (bf16 in, fp32 accumulation; mma_sync.cuh) and fp32 softmax in
// the log2 domain; attention.cu's SIMT kernels serve fp32 and the other head
// dims. Semantics are attention.cuh's.
//
// A block is 4 warps over 64 rows (queries in the forward and dQ, keys in
// dK/dV); each warp owns 16 of them and walks tiles of 64 columns. The
// block's own rows are staged once in shared memory and loaded into A
// fragments; the tiles it walks are double-buffered in shared memory with
// cp.async (zero-padded past the sequence), fetched one tile ahead. Scores,
// probabilities and the outputs stay in registers: an accumulator holding
// S (or dS) for 16 columns is already the A fragment of the next product,
// so nothing goes back through shared memory. dQ, and dK/dV per kv head
// (every query head of its group, so GQA needs no atomics), are separate
// kernels; dK/dV pairs key tile i with tile n - 1 - i in one block so that
// causal work is balanced. The backward recomputes P from the forward's
// log-sum-exp. Deterministic.
#include <type_traits>

#include "attention.cuh"
#include "attention_mask.cuh"
#include "cuda_common.cuh"
#include "mma_sync.cuh"

namespace llamaft::cuda {

namespace {

constexpr int kThreads = 128;  // 4 warps
constexpr int kRows = 64;      // rows per block: 16 per warp
constexpr int kCols = 64;      // columns per tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Shared-memory tiles: rows of HD + 8 bf16, 16-byte aligned for cp.async.
// The 4-word skew per row puts a fragment load's 8 rows x 4 column pairs on
// 32 different banks, and the column-pair loads of mma_cols on distinct
// words (two lanes share each, a broadcast).
template <int HD>
struct Tc {
  static constexpr int kLdh = HD + 8;  // bf16 per row of a (64, HD) head tile
  static constexpr size_t kTile = size_t(kRows) * kLdh * sizeof(bf16);
  static_assert(kLdh % 8 == 0 && kTile % 128 == 0, "16-byte staging chunks stay aligned");
  // forward: Q and two K and V tiles each (double-buffered); S, P and O stay in registers
  static constexpr size_t kFwdBytes = 5 * kTile;
  // dQ: Q and dO; K and V double-buffered
  static constexpr size_t kDqBytes = 6 * kTile;
  // dK/dV: K and V; Q, dO and their rows' lse and D double-buffered
  static constexpr size_t kDkdvBytes = 6 * kTile + 2 * 2 * kRows * sizeof(float);
};

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

// A (16, 16 * kSteps) operand's fragments from 16 rows of a shared tile.
template <int kSteps>
__device__ __forceinline__ void load_a(uint32_t (&a)[kSteps][4], const uint16_t* rows, int ld, int gq, int tq) {
#pragma unroll
  for (int kk = 0; kk < kSteps; ++kk) {
    const int c = kk * 16 + 2 * tq;
    a[kk][0] = pair_bf16(rows + gq * ld + c, rows + gq * ld + c + 1);
    a[kk][1] = pair_bf16(rows + (gq + 8) * ld + c, rows + (gq + 8) * ld + c + 1);
    a[kk][2] = pair_bf16(rows + gq * ld + c + 8, rows + gq * ld + c + 9);
    a[kk][3] = pair_bf16(rows + (gq + 8) * ld + c + 8, rows + (gq + 8) * ld + c + 9);
  }
}
// out(16, 64) = A B^T with A's 16 rows and B's 64 rows (row n = output column n)
// both shared tiles: A's fragments are loaded per k-step, which keeps the
// kernels under 255 registers at head_dim 128 (holding them all spilled).
template <int kSteps>
__device__ __forceinline__ void mma_rows_s(float (&out)[kCols / 8][4], const uint16_t* a_rows, int lda,
                                           const uint16_t* tile, int ld, int gq, int tq) {
#pragma unroll
  for (int nt = 0; nt < kCols / 8; ++nt) out[nt][0] = out[nt][1] = out[nt][2] = out[nt][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < kSteps; ++kk) {
    uint32_t a[1][4];
    load_a<1>(a, a_rows + kk * 16, lda, gq, tq);
#pragma unroll
    for (int nt = 0; nt < kCols / 8; ++nt) {
      const uint16_t* row = tile + (nt * 8 + gq) * ld + kk * 16 + 2 * tq;
      const uint32_t bb[2] = {pair_bf16(row, row + 1), pair_bf16(row + 8, row + 9)};
      mma_16816(out[nt], a[0], bb, out[nt]);
    }
  }
}
// acc(16, HD) += P B where P(16, 64) is in accumulator layout (rounded to
// bf16 here) and B(64, HD) a shared tile.
template <int HD>
__device__ __forceinline__ void mma_cols(float (&acc)[HD / 8][4], const float (&p)[kCols / 8][4],
                                         const uint16_t* tile, int ld, int gq, int tq) {
#pragma unroll
  for (int kk = 0; kk < kCols / 16; ++kk) {
    // Columns 16 kk .. 16 kk + 15 of P are its n-tiles 2 kk and 2 kk + 1: the k-step's A fragment.
    const uint32_t pa[4] = {pack_bf16x2(p[2 * kk][0], p[2 * kk][1]), pack_bf16x2(p[2 * kk][2], p[2 * kk][3]),
                            pack_bf16x2(p[2 * kk + 1][0], p[2 * kk + 1][1]),
                            pack_bf16x2(p[2 * kk + 1][2], p[2 * kk + 1][3])};
    const uint16_t* col = tile + (kk * 16 + 2 * tq) * ld + gq;
#pragma unroll
    for (int nt = 0; nt < HD / 8; ++nt) {
      const uint16_t* c = col + nt * 8;
      const uint32_t bb[2] = {pair_bf16(c, c + ld), pair_bf16(c + 8 * ld, c + 9 * ld)};
      mma_16816(acc[nt], pa, bb, acc[nt]);
    }
  }
}
// Rows gq and gq + 8 of a warp's 16 (one per accumulator half), scaled, as bf16.
template <int HD>
__device__ __forceinline__ void store_rows(bf16* base, int ld, const int (&rows)[2], int n_rows,
                                           const float (&acc)[HD / 8][4], float scale, int tq) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (rows[r] >= n_rows) continue;
    bf16* row = base + size_t(rows[r]) * ld;
#pragma unroll
    for (int nt = 0; nt < HD / 8; ++nt) {
      row[nt * 8 + 2 * tq] = bf16(scale * acc[nt][2 * r]);
      row[nt * 8 + 2 * tq + 1] = bf16(scale * acc[nt][2 * r + 1]);
    }
  }
}

// ---- forward ---------------------------------------------------------------------------
// FlashAttention-2 with mma.sync m16n8k16 (mma_sync.cuh): each warp keeps its
// 16 query rows' Q fragments, the (16, 64) scores S, the softmax statistics
// and the (16, HD) output O in registers; the scores become the bf16 A
// fragments of P V without leaving them (S's accumulator layout for keys
// 16k..16k+15 is P's A layout for that k-step). K and V tiles are
// double-buffered: cp.async fetches tile i+1 while tile i is in use.
// Grid (ceil(Tq / 64), n_heads, B).

// K or V rows [row0, row0 + kRows) of one head into a (kRows, kLdh) tile:
// cp.async 16-byte chunks when the source allows (the caller commits),
// zeros past n_valid; plain stores otherwise (then nothing is queued).
template <int HD>
__device__ __forceinline__ void stage_async(bf16* dst, const bf16* src, int lds, size_t row0, int n_valid) {
  const bool vector = lds % 8 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0;
  if (!vector) return stage<HD>(dst, src, lds, row0, n_valid, HD);
  constexpr int kPerRow = HD / 8;
  for (int i = threadIdx.x; i < kRows * kPerRow; i += kThreads) {
    const int r = i / kPerRow, c = i % kPerRow;
    bf16* d = dst + r * Tc<HD>::kLdh + c * 8;
    if (r < n_valid)
      cp_async_16(d, src + (row0 + r) * size_t(lds) + c * 8);
    else
      *reinterpret_cast<Chunk*>(d) = Chunk{};
  }
}

template <int HD>
__global__ void __launch_bounds__(kThreads)
    attention_fwd_tc_kernel(AttnShape s, const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse) {
  using L = Tc<HD>;
  constexpr int kKSteps = HD / 16, kONt = HD / 8, kSNt = kCols / 8;
  extern __shared__ __align__(128) uint8_t smem[];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, gq = lane / 4, tq = lane % 4;
  bf16* qs = reinterpret_cast<bf16*>(smem);
  bf16* kbuf[2] = {reinterpret_cast<bf16*>(smem + L::kTile), reinterpret_cast<bf16*>(smem + 2 * L::kTile)};
  bf16* vbuf[2] = {reinterpret_cast<bf16*>(smem + 3 * L::kTile), reinterpret_cast<bf16*>(smem + 4 * L::kTile)};

  const int t0 = blockIdx.x * kRows, h = blockIdx.y, b = blockIdx.z;
  const int hd = s.head_dim, g = h / (s.n_heads / s.n_kv_heads);
  const size_t qrow0 = size_t(b) * s.tq + t0, krow0 = size_t(b) * s.tk;
  const bf16* kh = k + size_t(g) * hd;
  const bf16* vh = v + size_t(g) * hd;
  stage<HD>(qs, q + size_t(h) * hd, s.ldq, qrow0, s.tq - t0, hd);
  const int first = tile_first_key(s, b, t0, kRows);
  const int last = min(s.tk, s.q_offset + min(t0 + kRows, s.tq));  // one past the last key any row sees
  if (first < last) {
    stage_async<HD>(kbuf[0], kh, s.ldk, krow0 + first, last - first);
    stage_async<HD>(vbuf[0], vh, s.ldv, krow0 + first, last - first);
  }
  cp_async_commit();
  __syncthreads();  // qs is complete

  // This lane's rows of the warp's 16: gq and gq + 8.
  const int rows[2] = {t0 + warp * 16 + gq, t0 + warp * 16 + gq + 8};
  int lo[2], hi[2];
  for (int i = 0; i < 2; ++i) key_range(s, b, rows[i], lo[i], hi[i]);
  const float sl2 = s.scale * kLog2e;
  const auto* q16 = reinterpret_cast<const uint16_t*>(qs + warp * 16 * L::kLdh);
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};  // row_sum: this lane's share
  float o[kONt][4];
#pragma unroll
  for (int n = 0; n < kONt; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;

  for (int j0 = first, it = 0; j0 < last; j0 += kCols, ++it) {
    const int cur = it & 1;
    if (j0 + kCols < last) {  // the next tile, into the buffer the last iteration finished with
      stage_async<HD>(kbuf[cur ^ 1], kh, s.ldk, krow0 + j0 + kCols, last - j0 - kCols);
      stage_async<HD>(vbuf[cur ^ 1], vh, s.ldv, krow0 + j0 + kCols, last - j0 - kCols);
      cp_async_commit();
      cp_async_wait<1>();  // this tile's group has landed
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // ... for every thread's copies
    const auto* k16 = reinterpret_cast<const uint16_t*>(kbuf[cur]);
    const auto* v16 = reinterpret_cast<const uint16_t*>(vbuf[cur]);

    // S(16, 64) = Q K^T: key n of n-tile nt is row nt * 8 + gq of the K tile.
    float sc[kSNt][4];
    mma_rows_s<kKSteps>(sc, q16, L::kLdh, k16, L::kLdh, gq, tq);
    // Online softmax in the log2 domain; each row's 64 scores are spread over 4 lanes.
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kSNt; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1, j = j0 + nt * 8 + 2 * tq + (e & 1);
        sc[nt][e] = (j >= lo[r] && j < hi[r]) ? sc[nt][e] * sl2 : -INFINITY;
        tile_max[r] = fmaxf(tile_max[r], sc[nt][e]);
      }
    float alpha[2], ref[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(kFullMask, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(kFullMask, tile_max[r], 2));
      const float new_max = fmaxf(row_max[r], tile_max[r]);
      ref[r] = new_max == -INFINITY ? 0.f : new_max;  // a row that has seen nothing yet stays empty
      alpha[r] = exp2f(row_max[r] - ref[r]);
      row_max[r] = new_max;
      row_sum[r] *= alpha[r];
    }
#pragma unroll
    for (int n = 0; n < kONt; ++n) {
      o[n][0] *= alpha[0];
      o[n][1] *= alpha[0];
      o[n][2] *= alpha[1];
      o[n][3] *= alpha[1];
    }
    // P, rounded to bf16 as the A fragments of O(16, HD) += P V (mma_cols): k-step kk covers
    // keys 16 kk .. 16 kk + 15, n-tiles 2 kk and 2 kk + 1 of S's accumulator layout.
#pragma unroll
    for (int nt = 0; nt < kSNt; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        sc[nt][e] = exp2f(sc[nt][e] - ref[e >> 1]);
        row_sum[e >> 1] += sc[nt][e];
      }
    mma_cols<HD>(o, sc, v16, L::kLdh, gq, tq);
    __syncthreads();  // every warp is done with this tile's buffers before they are refilled
  }
  cp_async_wait<0>();  // (no key tile at all: the first group, empty, is still open)

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(kFullMask, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(kFullMask, row_sum[r], 2);
    const int t = rows[r];
    if (t >= s.tq) continue;
    // A row that saw no key (possible only with doc_start) gets out 0 and lse -inf, as on the CPU.
    const float inv = row_sum[r] > 0.f ? 1.f / row_sum[r] : 0.f;
    bf16* orow = out + (size_t(b) * s.tq + t) * s.ldo + size_t(h) * hd;
#pragma unroll
    for (int nt = 0; nt < kONt; ++nt) {
      orow[nt * 8 + 2 * tq] = bf16(o[nt][2 * r] * inv);
      orow[nt * 8 + 2 * tq + 1] = bf16(o[nt][2 * r + 1] * inv);
    }
    if (tq == 0)
      lse[(size_t(b) * s.n_heads + h) * s.tq + t] =
          row_sum[r] > 0.f ? (row_max[r] + log2f(row_sum[r])) * kLn2 : -INFINITY;
  }
}

// ---- backward -----------------------------------------------------------------------------
// The same mma.sync structure. dQ: a block owns 64 query rows and walks the
// key tiles (K, V double-buffered); dK/dV: a block owns 64 keys of one kv
// head and walks every query tile of every query head of its group that can
// see them (Q, dO and their statistics double-buffered), so GQA needs no
// atomics and the result is deterministic. P is recomputed from the
// forward's log-sum-exp; dS = P (dP - D) with D = rowsum(dO * O).

// dQ = scale * dS K. Grid (ceil(Tq / 64), n_heads, B).
template <int HD>
__global__ void __launch_bounds__(kThreads)
    attention_dq_tc_kernel(AttnShape s, const bf16* q, const bf16* k, const bf16* v, const float* lse,
                           const float* dsum, const bf16* dout, bf16* dq) {
  using L = Tc<HD>;
  constexpr int kKSteps = HD / 16;
  extern __shared__ __align__(128) uint8_t smem[];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, gq = lane / 4, tq = lane % 4;
  bf16* qs = reinterpret_cast<bf16*>(smem);
  bf16* dos = reinterpret_cast<bf16*>(smem + L::kTile);
  bf16* kbuf[2] = {reinterpret_cast<bf16*>(smem + 2 * L::kTile), reinterpret_cast<bf16*>(smem + 3 * L::kTile)};
  bf16* vbuf[2] = {reinterpret_cast<bf16*>(smem + 4 * L::kTile), reinterpret_cast<bf16*>(smem + 5 * L::kTile)};

  const int t0 = blockIdx.x * kRows, h = blockIdx.y, b = blockIdx.z;
  const int hd = s.head_dim, g = h / (s.n_heads / s.n_kv_heads);
  const size_t qrow0 = size_t(b) * s.tq + t0, krow0 = size_t(b) * s.tk;
  const bf16* kh = k + size_t(g) * hd;
  const bf16* vh = v + size_t(g) * hd;
  stage<HD>(qs, q + size_t(h) * hd, s.ldq, qrow0, s.tq - t0, hd);
  stage<HD>(dos, dout + size_t(h) * hd, s.ldo, qrow0, s.tq - t0, hd);
  const int first = tile_first_key(s, b, t0, kRows);
  const int last = min(s.tk, s.q_offset + min(t0 + kRows, s.tq));
  if (first < last) {
    stage_async<HD>(kbuf[0], kh, s.ldk, krow0 + first, last - first);
    stage_async<HD>(vbuf[0], vh, s.ldv, krow0 + first, last - first);
  }
  cp_async_commit();
  __syncthreads();

  const int rows[2] = {t0 + warp * 16 + gq, t0 + warp * 16 + gq + 8};
  int lo[2], hi[2];
  float lse2[2], row_d[2];
  for (int r = 0; r < 2; ++r) {
    key_range(s, b, rows[r], lo[r], hi[r]);
    const size_t stat = (size_t(b) * s.n_heads + h) * s.tq + rows[r];
    lse2[r] = rows[r] < s.tq ? lse[stat] * kLog2e : 0.f;
    row_d[r] = rows[r] < s.tq ? dsum[stat] : 0.f;
  }
  const float sl2 = s.scale * kLog2e;
  const auto* q16 = reinterpret_cast<const uint16_t*>(qs + warp * 16 * L::kLdh);
  const auto* do16 = reinterpret_cast<const uint16_t*>(dos + warp * 16 * L::kLdh);
  float acc[HD / 8][4];
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;

  for (int j0 = first, it = 0; j0 < last; j0 += kCols, ++it) {
    const int cur = it & 1;
    if (j0 + kCols < last) {
      stage_async<HD>(kbuf[cur ^ 1], kh, s.ldk, krow0 + j0 + kCols, last - j0 - kCols);
      stage_async<HD>(vbuf[cur ^ 1], vh, s.ldv, krow0 + j0 + kCols, last - j0 - kCols);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const auto* k16 = reinterpret_cast<const uint16_t*>(kbuf[cur]);
    float sc[kCols / 8][4], dp[kCols / 8][4];
    mma_rows_s<kKSteps>(sc, q16, L::kLdh, k16, L::kLdh, gq, tq);
    mma_rows_s<kKSteps>(dp, do16, L::kLdh, reinterpret_cast<const uint16_t*>(vbuf[cur]), L::kLdh, gq, tq);
#pragma unroll
    for (int nt = 0; nt < kCols / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1, j = j0 + nt * 8 + 2 * tq + (e & 1);
        const float p = (j >= lo[r] && j < hi[r]) ? exp2f(sc[nt][e] * sl2 - lse2[r]) : 0.f;
        sc[nt][e] = p * (dp[nt][e] - row_d[r]);  // dS
      }
    mma_cols<HD>(acc, sc, k16, L::kLdh, gq, tq);
    __syncthreads();
  }
  cp_async_wait<0>();
  store_rows<HD>(dq + size_t(b) * s.tq * s.ldq + size_t(h) * hd, s.ldq, rows, s.tq, acc, s.scale, tq);
}

// dV = P^T dO and dK = scale * dS^T Q for 64 keys of one kv head. Causal
// key tiles differ in work (tile i is seen by the query tiles from i on), so
// block x takes key tiles x and n - 1 - x: every block does the same work.
// Grid (ceil(ceil(Tk / 64) / 2), n_kv_heads, B).
template <int HD>
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_tc_kernel(AttnShape s, const bf16* q, const bf16* k, const bf16* v, const float* lse,
                             const float* dsum, const bf16* dout, bf16* dk, bf16* dv) {
  using L = Tc<HD>;
  constexpr int kKSteps = HD / 16;
  extern __shared__ __align__(128) uint8_t smem[];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, gq = lane / 4, tq = lane % 4;
  bf16* ks = reinterpret_cast<bf16*>(smem);
  bf16* vs = reinterpret_cast<bf16*>(smem + L::kTile);
  bf16* qbuf[2] = {reinterpret_cast<bf16*>(smem + 2 * L::kTile), reinterpret_cast<bf16*>(smem + 3 * L::kTile)};
  bf16* dobuf[2] = {reinterpret_cast<bf16*>(smem + 4 * L::kTile), reinterpret_cast<bf16*>(smem + 5 * L::kTile)};
  float* stats = reinterpret_cast<float*>(smem + 6 * L::kTile);  // [buffer][lse2 | D][64]

  const int g = blockIdx.y, b = blockIdx.z;
  const int hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
  const int n_key_tiles = (s.tk + kRows - 1) / kRows;
  const float sl2 = s.scale * kLog2e;
  for (int pass = 0; pass < 2; ++pass) {
    const int tile = pass == 0 ? int(blockIdx.x) : n_key_tiles - 1 - int(blockIdx.x);
    if (pass == 1 && tile == int(blockIdx.x)) break;  // the middle tile of an odd count
    if (tile < 0 || tile >= n_key_tiles) break;
    const int j0 = tile * kRows;
    const size_t krow0 = size_t(b) * s.tk + j0;
    __syncthreads();  // the previous pass is done with every buffer
    stage<HD>(ks, k + size_t(g) * hd, s.ldk, krow0, s.tk - j0, hd);
    stage<HD>(vs, v + size_t(g) * hd, s.ldv, krow0, s.tk - j0, hd);
    // Query t sees key j only if q_offset + t >= j: tiles before that are skipped.
    const int t_begin = max(0, j0 - s.q_offset) / kRows * kRows;
    const int q_tiles = t_begin < s.tq ? (s.tq - t_begin + kRows - 1) / kRows : 0;
    const int steps = group * q_tiles;
    const auto fetch = [&](int step, int buf) {  // Q, dO and the statistics of step's query tile
      const int h = g * group + step / q_tiles, t0 = t_begin + (step % q_tiles) * kRows;
      const size_t qrow0 = size_t(b) * s.tq + t0;
      stage_async<HD>(qbuf[buf], q + size_t(h) * hd, s.ldq, qrow0, s.tq - t0);
      stage_async<HD>(dobuf[buf], dout + size_t(h) * hd, s.ldo, qrow0, s.tq - t0);
      if (threadIdx.x < kRows) {
        const int tt = t0 + threadIdx.x;
        const size_t stat = (size_t(b) * s.n_heads + h) * s.tq + tt;
        stats[buf * 2 * kRows + threadIdx.x] = tt < s.tq ? lse[stat] * kLog2e : 0.f;
        stats[buf * 2 * kRows + kRows + threadIdx.x] = tt < s.tq ? dsum[stat] : 0.f;
      }
    };
    if (steps > 0) fetch(0, 0);
    cp_async_commit();
    __syncthreads();  // ks and vs are complete
    const int keys[2] = {j0 + warp * 16 + gq, j0 + warp * 16 + gq + 8};
    const auto* k16 = reinterpret_cast<const uint16_t*>(ks + warp * 16 * L::kLdh);
    const auto* v16 = reinterpret_cast<const uint16_t*>(vs + warp * 16 * L::kLdh);
    float dk_acc[HD / 8][4], dv_acc[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; ++n)
      for (int e = 0; e < 4; ++e) dk_acc[n][e] = dv_acc[n][e] = 0.f;

    for (int step = 0; step < steps; ++step) {
      const int cur = step & 1;
      if (step + 1 < steps) {
        fetch(step + 1, cur ^ 1);
        cp_async_commit();
        cp_async_wait<1>();
      } else {
        cp_async_wait<0>();
      }
      __syncthreads();
      const int t0 = t_begin + (step % q_tiles) * kRows;
      const auto* q16 = reinterpret_cast<const uint16_t*>(qbuf[cur]);
      const auto* do16 = reinterpret_cast<const uint16_t*>(dobuf[cur]);
      const float* q_lse2 = stats + cur * 2 * kRows;
      const float* q_d = q_lse2 + kRows;
      float st[kCols / 8][4], ds[kCols / 8][4];
      mma_rows_s<kKSteps>(st, k16, L::kLdh, q16, L::kLdh, gq, tq);  // S^T(16 keys, 64 queries)
      mma_rows_s<kKSteps>(ds, v16, L::kLdh, do16, L::kLdh, gq, tq);  // dP^T = V dO^T, then dS^T in place
#pragma unroll
      for (int nt = 0; nt < kCols / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = nt * 8 + 2 * tq + (e & 1), tt = t0 + col;
          int lo, hi;
          key_range(s, b, tt, lo, hi);
          const int j = keys[e >> 1];
          const float p = (j >= lo && j < hi) ? exp2f(st[nt][e] * sl2 - q_lse2[col]) : 0.f;
          st[nt][e] = p;
          ds[nt][e] = p * (ds[nt][e] - q_d[col]);
        }
      mma_cols<HD>(dv_acc, st, do16, L::kLdh, gq, tq);
      mma_cols<HD>(dk_acc, ds, q16, L::kLdh, gq, tq);
      __syncthreads();
    }
    cp_async_wait<0>();
    store_rows<HD>(dk + size_t(b) * s.tk * s.ldk + size_t(g) * hd, s.ldk, keys, s.tk, dk_acc, s.scale, tq);
    store_rows<HD>(dv + size_t(b) * s.tk * s.ldv + size_t(g) * hd, s.ldv, keys, s.tk, dv_acc, 1.f, tq);
  }
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
      const dim3 grid((blocks_for(s.tk, kRows) + 1) / 2, s.n_kv_heads, s.batch);  // two key tiles a block
      kernel<<<grid, kThreads, Tc<HD>::kDkdvBytes, stream>>>(s, q, k, v, lse, dsum, dout, dk, dv);
      LLAMAFT_LAUNCH_CHECK();
    }
  });
}

}  // namespace llamaft::cuda
