// An owning array in a backend's memory space (host for CPU, device for CUDA).
#pragma once

#include <cstddef>
#include <utility>

#include "backend/backend.hpp"

namespace llamaft {

template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(Backend& be, size_t n) { resize(be, n); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept { swap(o); }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      reset();
      swap(o);
    }
    return *this;
  }
  ~DeviceArray() { reset(); }

  // Reallocates only when growing; contents are not preserved.
  void resize(Backend& be, size_t n) {
    if (backend_ == &be && n <= capacity_) {
      size_ = n;
      return;
    }
    reset();
    backend_ = &be;
    data_ = static_cast<T*>(be.alloc_bytes(n * sizeof(T)));
    size_ = capacity_ = n;
  }
  void reset() {
    if (backend_ && data_) backend_->free_bytes(data_);
    data_ = nullptr;
    size_ = capacity_ = 0;
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }

 private:
  void swap(DeviceArray& o) {
    std::swap(backend_, o.backend_);
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }
  Backend* backend_ = nullptr;
  T* data_ = nullptr;
  size_t size_ = 0, capacity_ = 0;
};

}  // namespace llamaft
