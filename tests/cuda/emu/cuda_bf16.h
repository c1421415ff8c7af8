// Fake <cuda_bf16.h> for the CPU emulator: the storage type only (kernels
// convert through llamaft::bf16; WMMA loads read these bits).
#pragma once

#include <cstdint>

struct __nv_bfloat16 {
  uint16_t x;
};
