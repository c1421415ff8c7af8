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
  // Every op of the table does nothing (a double result is 0).
#define LLAMAFT_COUNT_NOTHING(ret, name, cuda_family, profile_family, params, args, bytes, flops) \
  ret name params override { return ret(); }
  LLAMAFT_BACKEND_OPS(LLAMAFT_COUNT_NOTHING)
#undef LLAMAFT_COUNT_NOTHING

  // bf16 storage: counted at two bytes an element by the model's own buffers.
  explicit CountingBackend(bool bf16_storage) : bf16_storage_(bf16_storage) {}
  bool has_bf16_storage() const override { return bf16_storage_; }

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
