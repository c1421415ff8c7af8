// fp32 -> ggml block formats for GGUF export: F32, F16, BF16, Q8_0, Q4_0,
// Q5_0, Q4_K, Q5_K and Q6_K, as ggml's reference quantizers write them
// (quantize_row_*_ref in ggml-quants.c, the ones llama-quantize calls when it
// has no importance matrix, and gguf-py's numpy quantizers where those exist).
// Each block is computed with the reference's operations in the reference's
// order; this file is compiled with -ffp-contract=off, so every product and
// sum is rounded on its own as in C without contraction and in numpy. The
// block layouts are the ones io/gguf.cpp dequantizes.
#pragma once

#include <cstdint>

namespace llamaft::io {

// Bytes of `n` values (a whole number of blocks) of a ggml type number.
int64_t ggml_row_bytes(uint32_t type, int64_t n);

// True for the types quantize_gguf_rows() writes.
bool ggml_type_quantizable(uint32_t type);

// Writes `rows` rows of `n_per_row` fp32 values (n_per_row a multiple of
// the type's block size) as `type` into dst (rows * ggml_row_bytes bytes).
// Rows are independent; large tensors are split over the OpenMP threads.
void quantize_gguf_rows(uint32_t type, const float* src, uint8_t* dst, int64_t rows, int64_t n_per_row);

}  // namespace llamaft::io
