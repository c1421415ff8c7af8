#include <string>
#include <type_traits>

#include "attention.cuh"
#include "attention_mask.cuh"
#include "cuda_common.cuh"

namespace llamaft::cuda {

namespace {
constexpr int kThreads = 128;

// Query-major tiles (forward and dQ). Thread (qy = tid / 8, kx = tid % 8) owns
// query rows qy + 16*m (m < kTm), keys kx + 8*n (n < kTn) of the key tile and
// output columns kx + 8*c (c < kCols). The 8 lanes sharing a row are adjacent
// lanes of one warp, so a row max or sum is 3 shuffles.
template <int HD>
struct QTile {
  static constexpr int kBq = HD <= 128 ? 64 : 32;  // query rows per block
  static constexpr int kBk = 32;                   // keys per tile
  static constexpr int kTm = kBq / 16;
  static constexpr int kTn = kBk / 8;
  static constexpr int kCols = HD / 8;
  static constexpr int kLdh = HD + 1;  // padded shared row of a head vector
  static constexpr int kLdp = kBk + 1; // padded shared row of P or dS
};

// Key-major tiles (dK/dV). Thread (ky = tid / 8, qx = tid % 8) owns keys
// ky + 16*m (m < kTm) of the block, queries qx + 8*n (n < kTn) of the query
// tile and columns qx + 8*c (c < kCols).
template <int HD>
struct KTile {
  static constexpr int kBk = 32;  // keys per block
  static constexpr int kBq = 32;  // queries per step
  static constexpr int kTm = kBk / 16;
  static constexpr int kTn = kBq / 8;
  static constexpr int kCols = HD / 8;
  static constexpr int kLdh = HD + 1;
  static constexpr int kLdp = kBq + 1;  // padded shared row of P^T or dS^T
};

template <int HD>
constexpr size_t fwd_smem_floats() {
  using C = QTile<HD>;
  return size_t(C::kBq) * C::kLdh + size_t(C::kBk) * C::kLdh + size_t(C::kBk) * HD + size_t(C::kBq) * C::kLdp;
}
template <int HD>
constexpr size_t dq_smem_floats() {
  using C = QTile<HD>;
  return 2 * size_t(C::kBq) * C::kLdh + 2 * size_t(C::kBk) * C::kLdh + size_t(C::kBq) * C::kLdp;
}
template <int HD>
constexpr size_t dkdv_smem_floats() {
  using C = KTile<HD>;
  return 2 * size_t(C::kBk) * C::kLdh + 2 * size_t(C::kBq) * C::kLdh + 2 * size_t(C::kBk) * C::kLdp;
}

// dst(rows, ld) <- rows [row0, row0 + rows) of src (row stride lds, already
// offset to the head's first column); zeros past n_valid rows and hd columns.
template <int HD, typename T>
__device__ __forceinline__ void load_tile(float* dst, int ld, int rows, const T* src, int lds, size_t row0,
                                          int n_valid, int hd) {
  for (int i = threadIdx.x; i < rows * HD; i += kThreads) {
    const int r = i / HD, d = i % HD;
    dst[r * ld + d] = (r < n_valid && d < hd) ? static_cast<float>(src[(row0 + r) * size_t(lds) + d]) : 0.f;
  }
}

// ---- forward ------------------------------------------------------------------------
// Grid (ceil(Tq / kBq), n_heads, B).
template <typename T, int HD>
__global__ void __launch_bounds__(kThreads)
    attention_fwd_kernel(AttnShape s, const T* q, const T* k, const T* v, T* out, float* lse) {
  using C = QTile<HD>;
  extern __shared__ float smem[];
  float* qs = smem;                   // (kBq, kLdh)
  float* ks = qs + C::kBq * C::kLdh;  // (kBk, kLdh)
  float* vs = ks + C::kBk * C::kLdh;  // (kBk, HD)
  float* ps = vs + C::kBk * HD;       // (kBq, kLdp)
  const int qy = threadIdx.x / 8, kx = threadIdx.x % 8;
  const int t0 = blockIdx.x * C::kBq, h = blockIdx.y, b = blockIdx.z;
  const int hd = s.head_dim, g = h / (s.n_heads / s.n_kv_heads);
  const size_t qrow0 = size_t(b) * s.tq + t0, krow0 = size_t(b) * s.tk;

  load_tile<HD>(qs, C::kLdh, C::kBq, q + size_t(h) * hd, s.ldq, qrow0, s.tq - t0, hd);
  const int first = tile_first_key(s, b, t0, C::kBq);
  const int last = min(s.tk, s.q_offset + min(t0 + C::kBq, s.tq));  // one past the last key any row sees
  int lo[C::kTm], hi[C::kTm];
  float o[C::kTm][C::kCols] = {}, row_max[C::kTm], row_sum[C::kTm];
#pragma unroll
  for (int m = 0; m < C::kTm; ++m) {
    key_range(s, b, t0 + qy + 16 * m, lo[m], hi[m]);
    row_max[m] = -INFINITY;
    row_sum[m] = 0.f;
  }

  for (int j0 = first; j0 < last; j0 += C::kBk) {
    __syncthreads();  // the previous tile is no longer read (and qs is complete)
    load_tile<HD>(ks, C::kLdh, C::kBk, k + size_t(g) * hd, s.ldk, krow0 + j0, last - j0, hd);
    load_tile<HD>(vs, HD, C::kBk, v + size_t(g) * hd, s.ldv, krow0 + j0, last - j0, hd);
    __syncthreads();

    float sc[C::kTm][C::kTn] = {};  // q . k
#pragma unroll 4
    for (int d = 0; d < HD; ++d) {
      float qv[C::kTm], kv[C::kTn];
#pragma unroll
      for (int m = 0; m < C::kTm; ++m) qv[m] = qs[(qy + 16 * m) * C::kLdh + d];
#pragma unroll
      for (int n = 0; n < C::kTn; ++n) kv[n] = ks[(kx + 8 * n) * C::kLdh + d];
#pragma unroll
      for (int m = 0; m < C::kTm; ++m)
#pragma unroll
        for (int n = 0; n < C::kTn; ++n) sc[m][n] = fmaf(qv[m], kv[n], sc[m][n]);
    }

    // Online softmax: rescale the running sum and output to the new row max.
#pragma unroll
    for (int m = 0; m < C::kTm; ++m) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int n = 0; n < C::kTn; ++n) {
        const int j = j0 + kx + 8 * n;
        sc[m][n] = (j >= lo[m] && j < hi[m]) ? sc[m][n] * s.scale : -INFINITY;
        tile_max = fmaxf(tile_max, sc[m][n]);
      }
      const float new_max = fmaxf(row_max[m], group_max<8>(tile_max));
      // While a row has seen no key, new_max stays -inf and nothing changes.
      const float correction = new_max == -INFINITY ? 1.f : expf(row_max[m] - new_max);
      float tile_sum = 0.f;
#pragma unroll
      for (int n = 0; n < C::kTn; ++n) {
        const float p = sc[m][n] == -INFINITY ? 0.f : expf(sc[m][n] - new_max);
        ps[(qy + 16 * m) * C::kLdp + kx + 8 * n] = p;
        tile_sum += p;
      }
      row_sum[m] = row_sum[m] * correction + group_sum<8>(tile_sum);
      row_max[m] = new_max;
#pragma unroll
      for (int c = 0; c < C::kCols; ++c) o[m][c] *= correction;
    }
    __syncwarp();  // a row of ps is written and read by the 8 lanes of one warp

#pragma unroll 4
    for (int jj = 0; jj < C::kBk; ++jj) {
      float pv[C::kTm];
#pragma unroll
      for (int m = 0; m < C::kTm; ++m) pv[m] = ps[(qy + 16 * m) * C::kLdp + jj];
#pragma unroll
      for (int c = 0; c < C::kCols; ++c) {
        const float vv = vs[jj * HD + kx + 8 * c];
#pragma unroll
        for (int m = 0; m < C::kTm; ++m) o[m][c] = fmaf(pv[m], vv, o[m][c]);
      }
    }
  }

#pragma unroll
  for (int m = 0; m < C::kTm; ++m) {
    const int t = t0 + qy + 16 * m;
    if (t >= s.tq) continue;
    // A row that saw no key (possible only with doc_start) gets out 0 and lse -inf, as on the CPU.
    const float inv = row_sum[m] > 0.f ? 1.f / row_sum[m] : 0.f;
    T* orow = out + (size_t(b) * s.tq + t) * s.ldo + size_t(h) * hd;  // (hd)
#pragma unroll
    for (int c = 0; c < C::kCols; ++c) {
      const int d = kx + 8 * c;
      if (d < hd) orow[d] = static_cast<T>(o[m][c] * inv);
    }
    if (kx == 0) lse[(size_t(b) * s.n_heads + h) * s.tq + t] = rowmath::softmax_stat_lse({row_max[m], row_sum[m]});
  }
}

// ---- backward ------------------------------------------------------------------------
// dsum(B, n_heads, Tq) = rowsum(dO * O) over the head. One warp per row.
template <typename T>
__global__ void attention_bwd_dsum_kernel(AttnShape s, const T* out, const T* dout, float* dsum) {
  const size_t rows = size_t(s.batch) * s.n_heads * s.tq;
  const size_t row = size_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (row >= rows) return;  // whole warp
  const int t = int(row % s.tq), h = int((row / s.tq) % s.n_heads), b = int(row / (size_t(s.tq) * s.n_heads));
  const size_t o = (size_t(b) * s.tq + t) * s.ldo + size_t(h) * s.head_dim;
  float acc = 0.f;
  for (int d = threadIdx.x % kWarp; d < s.head_dim; d += kWarp)
    acc += static_cast<float>(dout[o + d]) * static_cast<float>(out[o + d]);
  acc = warp_sum(acc);
  if (threadIdx.x % kWarp == 0) dsum[row] = acc;
}

// dQ = scale * dS K, dS = P * (dO V^T - D), P = exp(scale q.k - lse).
// Grid (ceil(Tq / kBq), n_heads, B).
template <typename T, int HD>
__global__ void __launch_bounds__(kThreads)
    attention_bwd_dq_kernel(AttnShape s, const T* q, const T* k, const T* v, const float* lse, const float* dsum,
                            const T* dout, T* dq) {
  using C = QTile<HD>;
  extern __shared__ float smem[];
  float* qs = smem;                    // (kBq, kLdh)
  float* dos = qs + C::kBq * C::kLdh;  // (kBq, kLdh)
  float* ks = dos + C::kBq * C::kLdh;  // (kBk, kLdh)
  float* vs = ks + C::kBk * C::kLdh;   // (kBk, kLdh)
  float* dss = vs + C::kBk * C::kLdh;  // (kBq, kLdp)
  const int qy = threadIdx.x / 8, kx = threadIdx.x % 8;
  const int t0 = blockIdx.x * C::kBq, h = blockIdx.y, b = blockIdx.z;
  const int hd = s.head_dim, g = h / (s.n_heads / s.n_kv_heads);
  const size_t qrow0 = size_t(b) * s.tq + t0, krow0 = size_t(b) * s.tk;
  const size_t stat0 = (size_t(b) * s.n_heads + h) * s.tq;  // lse / dsum row of query 0

  load_tile<HD>(qs, C::kLdh, C::kBq, q + size_t(h) * hd, s.ldq, qrow0, s.tq - t0, hd);
  load_tile<HD>(dos, C::kLdh, C::kBq, dout + size_t(h) * hd, s.ldo, qrow0, s.tq - t0, hd);
  const int first = tile_first_key(s, b, t0, C::kBq);
  const int last = min(s.tk, s.q_offset + min(t0 + C::kBq, s.tq));
  int lo[C::kTm], hi[C::kTm];
  float row_lse[C::kTm], row_d[C::kTm], acc[C::kTm][C::kCols] = {};
#pragma unroll
  for (int m = 0; m < C::kTm; ++m) {
    const int t = t0 + qy + 16 * m;
    key_range(s, b, t, lo[m], hi[m]);
    row_lse[m] = t < s.tq ? lse[stat0 + t] : 0.f;
    row_d[m] = t < s.tq ? dsum[stat0 + t] : 0.f;
  }

  for (int j0 = first; j0 < last; j0 += C::kBk) {
    __syncthreads();
    load_tile<HD>(ks, C::kLdh, C::kBk, k + size_t(g) * hd, s.ldk, krow0 + j0, last - j0, hd);
    load_tile<HD>(vs, C::kLdh, C::kBk, v + size_t(g) * hd, s.ldv, krow0 + j0, last - j0, hd);
    __syncthreads();

    float sc[C::kTm][C::kTn] = {}, dp[C::kTm][C::kTn] = {};  // q . k, dO . v
#pragma unroll 4
    for (int d = 0; d < HD; ++d) {
      float qv[C::kTm], dov[C::kTm], kv[C::kTn], vv[C::kTn];
#pragma unroll
      for (int m = 0; m < C::kTm; ++m) {
        qv[m] = qs[(qy + 16 * m) * C::kLdh + d];
        dov[m] = dos[(qy + 16 * m) * C::kLdh + d];
      }
#pragma unroll
      for (int n = 0; n < C::kTn; ++n) {
        kv[n] = ks[(kx + 8 * n) * C::kLdh + d];
        vv[n] = vs[(kx + 8 * n) * C::kLdh + d];
      }
#pragma unroll
      for (int m = 0; m < C::kTm; ++m)
#pragma unroll
        for (int n = 0; n < C::kTn; ++n) {
          sc[m][n] = fmaf(qv[m], kv[n], sc[m][n]);
          dp[m][n] = fmaf(dov[m], vv[n], dp[m][n]);
        }
    }
#pragma unroll
    for (int m = 0; m < C::kTm; ++m)
#pragma unroll
      for (int n = 0; n < C::kTn; ++n) {
        const int j = j0 + kx + 8 * n;
        const bool ok = j >= lo[m] && j < hi[m];
        const float p = ok ? expf(sc[m][n] * s.scale - row_lse[m]) : 0.f;
        dss[(qy + 16 * m) * C::kLdp + kx + 8 * n] = ok ? p * (dp[m][n] - row_d[m]) : 0.f;
      }
    __syncwarp();  // a row of dss is written and read by the 8 lanes of one warp

#pragma unroll 4
    for (int jj = 0; jj < C::kBk; ++jj) {
      float dsv[C::kTm];
#pragma unroll
      for (int m = 0; m < C::kTm; ++m) dsv[m] = dss[(qy + 16 * m) * C::kLdp + jj];
#pragma unroll
      for (int c = 0; c < C::kCols; ++c) {
        const float kv = ks[jj * C::kLdh + kx + 8 * c];
#pragma unroll
        for (int m = 0; m < C::kTm; ++m) acc[m][c] = fmaf(dsv[m], kv, acc[m][c]);
      }
    }
  }

#pragma unroll
  for (int m = 0; m < C::kTm; ++m) {
    const int t = t0 + qy + 16 * m;
    if (t >= s.tq) continue;
    T* row = dq + (size_t(b) * s.tq + t) * s.ldq + size_t(h) * hd;  // (hd)
#pragma unroll
    for (int c = 0; c < C::kCols; ++c) {
      const int d = kx + 8 * c;
      if (d < hd) row[d] = static_cast<T>(s.scale * acc[m][c]);
    }
  }
}

// dV = P^T dO and dK = scale * dS^T Q for one tile of keys of one kv head,
// summed over the group's query heads and every query tile that can see it.
// Grid (ceil(Tk / kBk), n_kv_heads, B).
template <typename T, int HD>
__global__ void __launch_bounds__(kThreads)
    attention_bwd_dkdv_kernel(AttnShape s, const T* q, const T* k, const T* v, const float* lse, const float* dsum,
                              const T* dout, T* dk, T* dv) {
  using C = KTile<HD>;
  extern __shared__ float smem[];
  float* ks = smem;                    // (kBk, kLdh)
  float* vs = ks + C::kBk * C::kLdh;   // (kBk, kLdh)
  float* qs = vs + C::kBk * C::kLdh;   // (kBq, kLdh)
  float* dos = qs + C::kBq * C::kLdh;  // (kBq, kLdh)
  float* pt = dos + C::kBq * C::kLdh;  // (kBk, kLdp) P^T
  float* dst = pt + C::kBk * C::kLdp;  // (kBk, kLdp) dS^T
  __shared__ float q_lse[C::kBq], q_d[C::kBq];
  __shared__ int q_lo[C::kBq], q_hi[C::kBq];
  const int ky = threadIdx.x / 8, qx = threadIdx.x % 8;
  const int j0 = blockIdx.x * C::kBk, g = blockIdx.y, b = blockIdx.z;
  const int hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
  const size_t krow0 = size_t(b) * s.tk + j0;

  load_tile<HD>(ks, C::kLdh, C::kBk, k + size_t(g) * hd, s.ldk, krow0, s.tk - j0, hd);
  load_tile<HD>(vs, C::kLdh, C::kBk, v + size_t(g) * hd, s.ldv, krow0, s.tk - j0, hd);
  float acc_dk[C::kTm][C::kCols] = {}, acc_dv[C::kTm][C::kCols] = {};
  const int t_first = max(0, j0 - s.q_offset);  // earlier queries cannot see key j0 or later

  for (int h = g * group; h < (g + 1) * group; ++h) {
    const size_t stat0 = (size_t(b) * s.n_heads + h) * s.tq;
    for (int t0 = t_first; t0 < s.tq; t0 += C::kBq) {
      __syncthreads();  // the previous step is no longer read (and ks/vs are complete)
      const size_t qrow0 = size_t(b) * s.tq + t0;
      load_tile<HD>(qs, C::kLdh, C::kBq, q + size_t(h) * hd, s.ldq, qrow0, s.tq - t0, hd);
      load_tile<HD>(dos, C::kLdh, C::kBq, dout + size_t(h) * hd, s.ldo, qrow0, s.tq - t0, hd);
      const int qi = threadIdx.x;  // one thread per query of the tile
      if (qi < C::kBq) {
        key_range(s, b, t0 + qi, q_lo[qi], q_hi[qi]);
        q_lse[qi] = t0 + qi < s.tq ? lse[stat0 + t0 + qi] : 0.f;
        q_d[qi] = t0 + qi < s.tq ? dsum[stat0 + t0 + qi] : 0.f;
      }
      __syncthreads();

      float st[C::kTm][C::kTn] = {}, dpt[C::kTm][C::kTn] = {};  // k . q, v . dO
#pragma unroll 4
      for (int d = 0; d < HD; ++d) {
        float kv[C::kTm], vv[C::kTm], qv[C::kTn], dov[C::kTn];
#pragma unroll
        for (int m = 0; m < C::kTm; ++m) {
          kv[m] = ks[(ky + 16 * m) * C::kLdh + d];
          vv[m] = vs[(ky + 16 * m) * C::kLdh + d];
        }
#pragma unroll
        for (int n = 0; n < C::kTn; ++n) {
          qv[n] = qs[(qx + 8 * n) * C::kLdh + d];
          dov[n] = dos[(qx + 8 * n) * C::kLdh + d];
        }
#pragma unroll
        for (int m = 0; m < C::kTm; ++m)
#pragma unroll
          for (int n = 0; n < C::kTn; ++n) {
            st[m][n] = fmaf(qv[n], kv[m], st[m][n]);
            dpt[m][n] = fmaf(dov[n], vv[m], dpt[m][n]);
          }
      }
#pragma unroll
      for (int m = 0; m < C::kTm; ++m)
#pragma unroll
        for (int n = 0; n < C::kTn; ++n) {
          const int j = j0 + ky + 16 * m, r = qx + 8 * n;
          const bool ok = j >= q_lo[r] && j < q_hi[r];
          const float p = ok ? expf(st[m][n] * s.scale - q_lse[r]) : 0.f;
          pt[(ky + 16 * m) * C::kLdp + r] = p;
          dst[(ky + 16 * m) * C::kLdp + r] = ok ? p * (dpt[m][n] - q_d[r]) : 0.f;
        }
      __syncwarp();  // a row of pt / dst is written and read by the 8 lanes of one warp

#pragma unroll 4
      for (int r = 0; r < C::kBq; ++r) {
        float pv[C::kTm], dsv[C::kTm];
#pragma unroll
        for (int m = 0; m < C::kTm; ++m) {
          pv[m] = pt[(ky + 16 * m) * C::kLdp + r];
          dsv[m] = dst[(ky + 16 * m) * C::kLdp + r];
        }
#pragma unroll
        for (int c = 0; c < C::kCols; ++c) {
          const float dov = dos[r * C::kLdh + qx + 8 * c], qv = qs[r * C::kLdh + qx + 8 * c];
#pragma unroll
          for (int m = 0; m < C::kTm; ++m) {
            acc_dv[m][c] = fmaf(pv[m], dov, acc_dv[m][c]);
            acc_dk[m][c] = fmaf(dsv[m], qv, acc_dk[m][c]);
          }
        }
      }
    }
  }

#pragma unroll
  for (int m = 0; m < C::kTm; ++m) {
    const int j = j0 + ky + 16 * m;
    if (j >= s.tk) continue;
    T* dkrow = dk + (size_t(b) * s.tk + j) * s.ldk + size_t(g) * hd;  // (hd)
    T* dvrow = dv + (size_t(b) * s.tk + j) * s.ldv + size_t(g) * hd;  // (hd)
#pragma unroll
    for (int c = 0; c < C::kCols; ++c) {
      const int d = qx + 8 * c;
      if (d >= hd) continue;
      dkrow[d] = static_cast<T>(s.scale * acc_dk[m][c]);
      dvrow[d] = static_cast<T>(acc_dv[m][c]);
    }
  }
}

// ---- launch helpers --------------------------------------------------------------------
void check_shape(const AttnShape& s) {
  LLAMAFT_REQUIRE(s.head_dim >= 1 && s.head_dim <= kAttentionMaxHeadDim, "head_dim ", s.head_dim,
                  " is not supported by the CUDA attention kernels (1..", kAttentionMaxHeadDim, ")");
  LLAMAFT_CHECK(s.n_kv_heads > 0 && s.n_heads % s.n_kv_heads == 0, "n_heads ", s.n_heads, ", n_kv_heads ",
                s.n_kv_heads);
  LLAMAFT_CHECK(s.batch >= 0 && s.tq >= 0 && s.tk >= 0 && s.q_offset >= 0, "batch ", s.batch, " tq ", s.tq, " tk ",
                s.tk, " q_offset ", s.q_offset);
  LLAMAFT_CHECK(s.ldq >= s.n_heads * s.head_dim && s.ldo >= s.n_heads * s.head_dim &&
                    s.ldk >= s.n_kv_heads * s.head_dim && s.ldv >= s.n_kv_heads * s.head_dim,
                "attention strides too small: ldq ", s.ldq, " ldk ", s.ldk, " ldv ", s.ldv, " ldo ", s.ldo);
  LLAMAFT_CHECK(s.batch <= 65535 && s.n_heads <= 65535, "attention grid: batch ", s.batch, " n_heads ", s.n_heads);
}

std::string smem_user(int head_dim) { return "CUDA attention with head_dim " + std::to_string(head_dim); }

// Calls f(std::integral_constant<int, HD>) with the padded head dim for hd.
template <typename F>
void with_head_dim(int hd, F&& f) {
  if (hd <= 32)
    f(std::integral_constant<int, 32>{});
  else if (hd <= 64)
    f(std::integral_constant<int, 64>{});
  else if (hd <= 128)
    f(std::integral_constant<int, 128>{});
  else
    f(std::integral_constant<int, 256>{});
}
}  // namespace

template <typename T>
void attention_fwd(const AttnShape& s, const T* q, const T* k, const T* v, T* out, float* lse, cudaStream_t stream) {
  check_shape(s);
  if (s.batch == 0 || s.tq == 0 || s.n_heads == 0) return;
  if constexpr (std::is_same_v<T, bf16>) {
    if (attention_tc_supported(s.head_dim)) return attention_fwd_tc(s, q, k, v, out, lse, stream);
  }
  with_head_dim(s.head_dim, [&](auto hd_tag) {
    constexpr int HD = decltype(hd_tag)::value;
    const size_t smem = sizeof(float) * fwd_smem_floats<HD>();
    auto* kernel = attention_fwd_kernel<T, HD>;
    opt_in_shared_memory(kernel, smem, smem_user(s.head_dim).c_str());
    const dim3 grid(blocks_for(s.tq, QTile<HD>::kBq), s.n_heads, s.batch);
    kernel<<<grid, kThreads, smem, stream>>>(s, q, k, v, out, lse);
    LLAMAFT_LAUNCH_CHECK();
  });
}

size_t attention_bwd_workspace_floats(const AttnShape& s) { return size_t(s.batch) * s.n_heads * s.tq; }

template <typename T>
void attention_bwd(const AttnShape& s, const T* q, const T* k, const T* v, const T* out, const float* lse,
                   const T* dout, T* dq, T* dk, T* dv, float* workspace, cudaStream_t stream) {
  check_shape(s);
  if (s.batch == 0 || s.n_heads == 0) return;
  LLAMAFT_CHECK(workspace != nullptr || s.tq == 0, "attention_bwd needs a workspace of ",
                attention_bwd_workspace_floats(s), " floats");
  float* dsum = workspace;  // (B, n_heads, Tq)
  const size_t rows = attention_bwd_workspace_floats(s);
  if (rows > 0) {
    constexpr unsigned kDsumThreads = 256;
    attention_bwd_dsum_kernel<<<blocks_for(rows, kDsumThreads / kWarp), kDsumThreads, 0, stream>>>(s, out, dout,
                                                                                                    dsum);
    LLAMAFT_LAUNCH_CHECK();
  }
  if constexpr (std::is_same_v<T, bf16>) {
    if (attention_tc_supported(s.head_dim)) return attention_bwd_tc(s, q, k, v, lse, dsum, dout, dq, dk, dv, stream);
  }
  with_head_dim(s.head_dim, [&](auto hd_tag) {
    constexpr int HD = decltype(hd_tag)::value;
    if (s.tq > 0) {
      const size_t smem = sizeof(float) * dq_smem_floats<HD>();
      auto* kernel = attention_bwd_dq_kernel<T, HD>;
      opt_in_shared_memory(kernel, smem, smem_user(s.head_dim).c_str());
      const dim3 grid(blocks_for(s.tq, QTile<HD>::kBq), s.n_heads, s.batch);
      kernel<<<grid, kThreads, smem, stream>>>(s, q, k, v, lse, dsum, dout, dq);
      LLAMAFT_LAUNCH_CHECK();
    }
    if (s.tk > 0) {
      const size_t smem = sizeof(float) * dkdv_smem_floats<HD>();
      auto* kernel = attention_bwd_dkdv_kernel<T, HD>;
      opt_in_shared_memory(kernel, smem, smem_user(s.head_dim).c_str());
      const dim3 grid(blocks_for(s.tk, KTile<HD>::kBk), s.n_kv_heads, s.batch);
      kernel<<<grid, kThreads, smem, stream>>>(s, q, k, v, lse, dsum, dout, dk, dv);
      LLAMAFT_LAUNCH_CHECK();
    }
  });
}

template void attention_fwd<float>(const AttnShape&, const float*, const float*, const float*, float*, float*,
                                   cudaStream_t);
template void attention_bwd<float>(const AttnShape&, const float*, const float*, const float*, const float*,
                                   const float*, const float*, float*, float*, float*, float*, cudaStream_t);
template void attention_fwd<bf16>(const AttnShape&, const bf16*, const bf16*, const bf16*, bf16*, float*,
                                  cudaStream_t);
template void attention_bwd<bf16>(const AttnShape&, const bf16*, const bf16*, const bf16*, const bf16*,
                                  const float*, const bf16*, bf16*, bf16*, bf16*, float*, cudaStream_t);

}  // namespace llamaft::cuda
