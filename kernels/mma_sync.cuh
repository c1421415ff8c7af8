// Warp-level tensor-core MMA and asynchronous copies, for attention_tc.cu:
// mma.sync m16n8k16 (bf16 x bf16 -> fp32) with the fragments in registers,
// and cp.async 16-byte global -> shared copies in commit groups. Under the
// CPU emulator (tests/cuda/emu) the same calls run emu::mma_16816, which
// assembles the matrices from every lane's registers by the documented
// layout (so a layout mistake gives wrong numbers there too), and emu's
// cp.async queue, which performs a thread's copies only at its wait (so a
// read before the wait sees stale shared memory).
//
// Fragments, per lane (g = lane / 4, t = lane % 4), from the PTX ISA's
// "Matrix fragments for mma.m16n8k16 with floating point type"; each 32-bit
// register holds two bf16, the lower index in the low half:
//   A (16 x 16, row):  a[0] = A[g][2t, 2t+1]     a[1] = A[g+8][2t, 2t+1]
//                      a[2] = A[g][2t+8, 2t+9]   a[3] = A[g+8][2t+8, 2t+9]
//   B (16 x 8, col):   b[0] = B[2t, 2t+1][g]     b[1] = B[2t+8, 2t+9][g]
//   C, D (16 x 8):     c[0], c[1] = C[g][2t, 2t+1]   c[2], c[3] = C[g+8][2t, 2t+1]
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.hpp"

namespace llamaft::cuda {

// d = a b + c over one warp (all 32 lanes, converged).
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                          const float (&c)[4]) {
#ifdef LLAMAFT_CUDA_EMULATOR
  emu::mma_16816(d, a, b, c);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
#endif
}

// Two bf16 (lo, hi) in one register, each rounded to nearest even.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  return uint32_t(bf16(lo).bits) | (uint32_t(bf16(hi).bits) << 16);
}
// Two bf16 from two addresses (a column pair of a row-major tile).
__device__ __forceinline__ uint32_t pair_bf16(const uint16_t* lo, const uint16_t* hi) {
  return uint32_t(*lo) | (uint32_t(*hi) << 16);
}

// 16 bytes from global to shared memory, asynchronously (cp.async.cg: L2 only).
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src) {
#ifdef LLAMAFT_CUDA_EMULATOR
  emu::cp_async(smem_dst, gmem_src, 16);
#else
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem_src));
#endif
}
// Closes this thread's current group of cp.async copies.
__device__ __forceinline__ void cp_async_commit() {
#ifdef LLAMAFT_CUDA_EMULATOR
  emu::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
// Waits until at most kPending of this thread's committed groups are in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
#ifdef LLAMAFT_CUDA_EMULATOR
  emu::cp_async_wait(kPending);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
#endif
}

}  // namespace llamaft::cuda
