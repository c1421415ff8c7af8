// Backend defaults: the batched optimizer ops as loops, and the bf16-storage
// ops, which a backend that stores fp32 only does not have.
#include "backend/backend.hpp"

#include "core/error.hpp"

namespace llamaft {

namespace {
[[noreturn]] void no_bf16(const Backend& be, const char* op) {
  LLAMAFT_FAIL("the ", be.name(), " backend has no bf16 storage (", op,
               "); bf16 activations need the cpu or cuda backend, or set train.param_dtype = fp32");
}
}  // namespace

double Backend::sum_squares_many(const float* const* xs, const size_t* ns, int count) {
  double total = 0;
  for (int i = 0; i < count; ++i) total += sum_squares(xs[i], ns[i]);
  return total;
}

void Backend::adamw_many(const AdamWShard* shards, int count, const rowmath::AdamWParams& a) {
  for (int i = 0; i < count; ++i) adamw(shards[i].p, shards[i].m, shards[i].v, shards[i].g, shards[i].n, a);
}

void Backend::fill(bf16*, float, size_t) { no_bf16(*this, "fill"); }
void Backend::gemm(bool, bool, int, int, int, float, const bf16*, int, const bf16*, int, float, bf16*, int) {
  no_bf16(*this, "gemm");
}
void Backend::gemm(bool, bool, int, int, int, float, const bf16*, int, const bf16*, int, float, float*, int) {
  no_bf16(*this, "gemm");
}
void Backend::axpy(float, const bf16*, bf16*, size_t) { no_bf16(*this, "axpy"); }
void Backend::embedding_fwd(const int32_t*, const bf16*, bf16*, int, int) { no_bf16(*this, "embedding_fwd"); }
void Backend::embedding_bwd(const int32_t*, const bf16*, float*, int, int) { no_bf16(*this, "embedding_bwd"); }
void Backend::rmsnorm_fwd(const bf16*, const bf16*, bf16*, float*, int, int, float) {
  no_bf16(*this, "rmsnorm_fwd");
}
void Backend::rmsnorm_bwd(const bf16*, const bf16*, const bf16*, const float*, bf16*, float*, int, int) {
  no_bf16(*this, "rmsnorm_bwd");
}
void Backend::rope(bf16*, int, const int32_t*, const float*, int, int, int, bool) { no_bf16(*this, "rope"); }
void Backend::swiglu_fwd(const bf16*, const bf16*, int, bf16*, int, int) { no_bf16(*this, "swiglu_fwd"); }
void Backend::swiglu_bwd(const bf16*, const bf16*, const bf16*, int, bf16*, bf16*, int, int, int) {
  no_bf16(*this, "swiglu_bwd");
}
void Backend::attention_fwd(const AttnShape&, const bf16*, const bf16*, const bf16*, bf16*, float*) {
  no_bf16(*this, "attention_fwd");
}
void Backend::attention_bwd(const AttnShape&, const bf16*, const bf16*, const bf16*, const bf16*, const float*,
                            const bf16*, bf16*, bf16*, bf16*) {
  no_bf16(*this, "attention_bwd");
}
void Backend::cross_entropy_rows(bf16*, const int32_t*, float*, int, int, float) {
  no_bf16(*this, "cross_entropy_rows");
}
void Backend::dropout(const bf16*, bf16*, int, int, int, const uint64_t*, uint64_t, float) {
  no_bf16(*this, "dropout");
}
void Backend::unpack_bf16(const float*, size_t, bf16*, size_t, int) { no_bf16(*this, "unpack_bf16"); }
void Backend::dequantize_unit(const quant::UnitCodec&, const float*, bf16*) { no_bf16(*this, "dequantize_unit"); }

}  // namespace llamaft
