#include "backend/cuda/device_arena.hpp"

#include <iterator>

namespace llamaft {

void DeviceArena::reset(void* base, size_t capacity) {
  base_ = static_cast<char*>(base);
  capacity_ = capacity / kAlignment * kAlignment;
  used_ = 0;
  free_by_offset_.clear();
  free_by_size_.clear();
  live_.clear();
  if (capacity_ > 0) insert_free(0, capacity_);
}

void DeviceArena::insert_free(size_t offset, size_t size) {
  free_by_offset_.emplace(offset, size);
  free_by_size_.emplace(size, offset);
}

void DeviceArena::erase_free(std::map<size_t, size_t>::iterator it) {
  auto range = free_by_size_.equal_range(it->second);
  for (auto s = range.first; s != range.second; ++s)
    if (s->second == it->first) {
      free_by_size_.erase(s);
      break;
    }
  free_by_offset_.erase(it);
}

void* DeviceArena::allocate(size_t bytes) {
  if (bytes == 0 || bytes > capacity_) return nullptr;
  const size_t size = round_up(bytes);
  auto fit = free_by_size_.lower_bound(size);
  if (fit == free_by_size_.end()) return nullptr;
  const size_t offset = fit->second, block = fit->first;
  erase_free(free_by_offset_.find(offset));
  if (block > size) insert_free(offset + size, block - size);
  live_.emplace(offset, size);
  used_ += size;
  return base_ + offset;
}

size_t DeviceArena::release(void* p) {
  char* c = static_cast<char*>(p);
  if (!c || c < base_ || c >= base_ + capacity_) return 0;
  const size_t offset = static_cast<size_t>(c - base_);
  auto it = live_.find(offset);
  if (it == live_.end()) return 0;
  const size_t size = it->second;
  live_.erase(it);
  used_ -= size;
  size_t start = offset, length = size;
  auto next = free_by_offset_.lower_bound(offset);
  if (next != free_by_offset_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      length += prev->second;
      erase_free(prev);
    }
  }
  next = free_by_offset_.lower_bound(offset);
  if (next != free_by_offset_.end() && next->first == offset + size) {
    length += next->second;
    erase_free(next);
  }
  insert_free(start, length);
  return size;
}

size_t DeviceArena::largest_free() const {
  return free_by_size_.empty() ? 0 : std::prev(free_by_size_.end())->first;
}

}  // namespace llamaft
