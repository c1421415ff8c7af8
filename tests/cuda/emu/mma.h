// Fake <mma.h> for the CPU emulator: nvcuda::wmma with 16x16x16 tiles. Each
// lane's fragment holds the whole tile (element (r, c) at x[r * cols + c]),
// so loads, stores and mma_sync give every lane the same full result and the
// warp-collective semantics hold without modelling the hardware's per-lane
// layout (code may only touch x[] uniformly, as on the GPU). As on the GPU,
// each operation first waits for every lane of the warp to arrive (the
// programming guide's "waits until all warp lanes have arrived") and nothing
// more: lanes then run on, so a kernel that reads a stored tile, or
// overwrites a loaded one, without __syncwarp() in between sees the race here
// too (a lane's redundant full-tile store lands after another lane's reads).
// Pointers must be 32-byte aligned and ldm a multiple of 16 bytes, as the
// hardware requires; a violation aborts with a message.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_emu.hpp"

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
  static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
  static constexpr int num_elements = rows * cols;
  float x[num_elements];
};

namespace emu_detail {
inline void check(const void* p, unsigned ldm, size_t elem_bytes, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || (ldm * elem_bytes) % 16 != 0) {
    std::fprintf(stderr, "cuda_emu: wmma::%s with pointer %p (needs 32-byte alignment) and ldm %u (needs a multiple "
                 "of 16 bytes)\n", what, p, ldm);
    std::abort();
  }
}
inline float value(const __nv_bfloat16* p) {
  const uint32_t u = uint32_t(p->x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float value(const float* p) { return *p; }
}  // namespace emu_detail

template <typename Use, int M, int N, int K, typename T, typename L>
void fill_fragment(fragment<Use, M, N, K, T, L>& f, float v) {
  for (float& e : f.x) e = v;
}

// matrix_a / matrix_b: the layout is the fragment's type.
template <typename Use, int M, int N, int K, typename T, typename L>
void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const T* p, unsigned ldm) {
  static_assert(!std::is_same<Use, accumulator>::value, "an accumulator load takes a layout_t");
  __syncwarp();
  emu_detail::check(p, ldm, sizeof(T), "load_matrix_sync");
  using F = fragment<Use, M, N, K, T, L>;
  constexpr bool row = std::is_same<L, row_major>::value;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) f.x[r * F::cols + c] = emu_detail::value(p + (row ? r * ldm + c : c * ldm + r));
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm, layout_t l) {
  __syncwarp();
  emu_detail::check(p, ldm, sizeof(float), "load_matrix_sync");
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) f.x[r * N + c] = p[l == mem_row_major ? r * ldm + c : c * ldm + r];
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t l) {
  __syncwarp();
  emu_detail::check(p, ldm, sizeof(float), "store_matrix_sync");
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) p[l == mem_row_major ? r * ldm + c : c * ldm + r] = f.x[r * N + c];
}

template <int M, int N, int K, typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  __syncwarp();
  float out[M * N];
  for (int r = 0; r < M; ++r)
    for (int n = 0; n < N; ++n) {
      float acc = c.x[r * N + n];
      for (int k = 0; k < K; ++k) acc += a.x[r * K + k] * b.x[k * N + n];
      out[r * N + n] = acc;
    }
  std::memcpy(d.x, out, sizeof(out));
}

}  // namespace nvcuda::wmma
