// Bookkeeping for the CUDA backend's memory pool: one region, cudaMalloc'd
// once at construction, handed out by best fit from a free list that
// coalesces neighbours on release (so a fresh pool behaves like a bump
// allocator). Plain C++ with no CUDA calls, so it is unit-tested without a GPU.
#pragma once

#include <cstddef>
#include <map>
#include <unordered_map>

namespace llamaft {

class DeviceArena {
 public:
  static constexpr size_t kAlignment = 256;  // cudaMalloc's alignment; enough for any vector load

  DeviceArena() = default;
  DeviceArena(void* base, size_t capacity) { reset(base, capacity); }
  // Forgets every block and manages [base, base + capacity) afresh.
  void reset(void* base, size_t capacity);

  // A block of at least `bytes` (rounded up to kAlignment), or nullptr when
  // no free block is large enough. bytes == 0 gives nullptr.
  void* allocate(size_t bytes);
  // Returns the block's (rounded) size, or 0 when p is not a live block.
  size_t release(void* p);

  size_t capacity() const { return capacity_; }
  size_t used() const { return used_; }
  size_t free() const { return capacity_ - used_; }
  size_t largest_free() const;
  size_t live_blocks() const { return live_.size(); }
  size_t free_blocks() const { return free_by_offset_.size(); }
  static size_t round_up(size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

 private:
  void insert_free(size_t offset, size_t size);
  void erase_free(std::map<size_t, size_t>::iterator it);

  char* base_ = nullptr;
  size_t capacity_ = 0, used_ = 0;
  std::map<size_t, size_t> free_by_offset_;         // offset -> size
  std::multimap<size_t, size_t> free_by_size_;      // size -> offset (best fit)
  std::unordered_map<size_t, size_t> live_;         // offset -> size
};

}  // namespace llamaft
