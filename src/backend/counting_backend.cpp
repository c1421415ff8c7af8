// The counting backend: hands out distinct fake addresses, never touches
// memory, and does no math. `llamaft plan` drives the real FSDP training
// path with it, so the plan is the code's own allocation pattern, not a
// separate formula that can drift from it.
#include <cstring>
#include <map>

#include "backend/backend.hpp"

namespace llamaft {
namespace {

class CountingBackend final : public Backend {
 public:
  std::string name() const override { return "counting"; }
  void* alloc_bytes(size_t bytes) override {
    if (bytes == 0) return nullptr;
    next_ += (bytes + 4095) / 4096 * 4096 + 4096;
    void* p = reinterpret_cast<void*>(next_);
    sizes_[p] = bytes;
    note_alloc(bytes);
    return p;
  }
  void free_bytes(void* p) override {
    auto it = sizes_.find(p);
    if (it == sizes_.end()) return;
    note_free(it->second);
    sizes_.erase(it);
  }
  void to_device(void*, const void*, size_t) override {}
  void to_host(void* dst, const void*, size_t bytes) override { std::memset(dst, 0, bytes); }
  void copy(void*, const void*, size_t) override {}
  void fill(float*, float, size_t) override {}
  void gemm(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int) override {}
  void axpy(float, const float*, float*, size_t) override {}
  double sum(const float*, size_t) override { return 0; }
  double sum_squares(const float*, size_t) override { return 0; }
  void scale(float*, float, size_t) override {}
  void adamw(float*, float*, float*, const float*, size_t, const rowmath::AdamWParams&) override {}
  void embedding_fwd(const int32_t*, const float*, float*, int, int) override {}
  void embedding_bwd(const int32_t*, const float*, float*, int, int) override {}
  void rmsnorm_fwd(const float*, const float*, float*, float*, int, int, float) override {}
  void rmsnorm_bwd(const float*, const float*, const float*, const float*, float*, float*, int, int) override {}
  void rope(float*, int, const int32_t*, const float*, int, int, int, bool) override {}
  void swiglu_fwd(const float*, const float*, int, float*, int, int) override {}
  void swiglu_bwd(const float*, const float*, const float*, int, float*, float*, int, int, int) override {}
  void attention_fwd(const AttnShape&, const float*, const float*, const float*, float*, float*) override {}
  void attention_bwd(const AttnShape&, const float*, const float*, const float*, const float*, const float*,
                     const float*, float*, float*, float*) override {}
  void cross_entropy_rows(float*, const int32_t*, float*, int, int, float) override {}
  void dequantize_unit(const quant::UnitCodec&, const float*, float*) override {}
  void pack_bf16(const float*, float*, size_t) override {}
  void unpack_bf16(const float*, size_t, float*, size_t, int) override {}
  void dropout(const float*, float*, int, int, int, const uint64_t*, uint64_t, float) override {}

  // bf16 storage: counted at two bytes an element by the model's own buffers.
  explicit CountingBackend(bool bf16_storage) : bf16_storage_(bf16_storage) {}
  bool has_bf16_storage() const override { return bf16_storage_; }
  void fill(bf16*, float, size_t) override {}
  void gemm(bool, bool, int, int, int, float, const bf16*, int, const bf16*, int, float, bf16*, int) override {}
  void gemm(bool, bool, int, int, int, float, const bf16*, int, const bf16*, int, float, float*, int) override {}
  void axpy(float, const bf16*, bf16*, size_t) override {}
  void embedding_fwd(const int32_t*, const bf16*, bf16*, int, int) override {}
  void embedding_bwd(const int32_t*, const bf16*, float*, int, int) override {}
  void rmsnorm_fwd(const bf16*, const bf16*, bf16*, float*, int, int, float) override {}
  void rmsnorm_bwd(const bf16*, const bf16*, const bf16*, const float*, bf16*, float*, int, int) override {}
  void rope(bf16*, int, const int32_t*, const float*, int, int, int, bool) override {}
  void swiglu_fwd(const bf16*, const bf16*, int, bf16*, int, int) override {}
  void swiglu_bwd(const bf16*, const bf16*, const bf16*, int, bf16*, bf16*, int, int, int) override {}
  void attention_fwd(const AttnShape&, const bf16*, const bf16*, const bf16*, bf16*, float*) override {}
  void attention_bwd(const AttnShape&, const bf16*, const bf16*, const bf16*, const bf16*, const float*,
                     const bf16*, bf16*, bf16*, bf16*) override {}
  void cross_entropy_rows(bf16*, const int32_t*, float*, int, int, float) override {}
  void dropout(const bf16*, bf16*, int, int, int, const uint64_t*, uint64_t, float) override {}
  void unpack_bf16(const float*, size_t, bf16*, size_t, int) override {}
  void dequantize_unit(const quant::UnitCodec&, const float*, bf16*) override {}

 private:
  bool bf16_storage_ = false;
  uintptr_t next_ = 1 << 20;
  std::map<void*, size_t> sizes_;
};

}  // namespace

std::unique_ptr<Backend> make_counting_backend(bool bf16_storage) {
  return std::make_unique<CountingBackend>(bf16_storage);
}

}  // namespace llamaft
