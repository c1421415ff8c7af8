// DeviceArena, the CUDA backend's pool bookkeeping: pure offsets, so these
// tests run on any machine (no GPU). Checks alignment, best fit, coalescing on
// release, exhaustion, stray frees, and a seeded random alloc/free sequence
// against an independent model of which bytes are taken.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "backend/cuda/device_arena.hpp"

namespace llamaft {
namespace {

// The arena never dereferences its base, so a fake address is enough.
char* const kBase = reinterpret_cast<char*>(uintptr_t(1) << 40);
constexpr size_t kA = DeviceArena::kAlignment;

size_t offset_of(void* p) { return static_cast<size_t>(static_cast<char*>(p) - kBase); }

TEST(DeviceArena, AlignsAndBumpsFromAFreshPool) {
  DeviceArena arena(kBase, 100 * kA + 17);  // the ragged tail is dropped
  EXPECT_EQ(arena.capacity(), 100 * kA);
  void* a = arena.allocate(1);
  void* b = arena.allocate(kA + 1);
  void* c = arena.allocate(3 * kA);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(offset_of(a), 0u);
  EXPECT_EQ(offset_of(b), kA);
  EXPECT_EQ(offset_of(c), 3 * kA);
  EXPECT_EQ(arena.used(), 6 * kA);
  EXPECT_EQ(arena.allocate(0), nullptr);
  EXPECT_EQ(arena.live_blocks(), 3u);
}

TEST(DeviceArena, ReleaseCoalescesNeighbours) {
  DeviceArena arena(kBase, 10 * kA);
  std::vector<void*> blocks;
  for (int i = 0; i < 10; ++i) blocks.push_back(arena.allocate(kA));
  EXPECT_EQ(arena.allocate(1), nullptr);
  EXPECT_EQ(arena.largest_free(), 0u);
  EXPECT_EQ(arena.release(blocks[3]), kA);
  EXPECT_EQ(arena.release(blocks[5]), kA);
  EXPECT_EQ(arena.free_blocks(), 2u);
  EXPECT_EQ(arena.largest_free(), kA);
  EXPECT_EQ(arena.allocate(2 * kA), nullptr);  // 2 free blocks, not adjacent
  EXPECT_EQ(arena.release(blocks[4]), kA);     // joins 3, 4 and 5
  EXPECT_EQ(arena.free_blocks(), 1u);
  EXPECT_EQ(arena.largest_free(), 3 * kA);
  void* big = arena.allocate(3 * kA);
  EXPECT_EQ(offset_of(big), 3 * kA);
  for (int i : {0, 1, 2, 6, 7, 8, 9}) arena.release(blocks[i]);
  arena.release(big);
  EXPECT_EQ(arena.used(), 0u);
  EXPECT_EQ(arena.free_blocks(), 1u);
  EXPECT_EQ(arena.largest_free(), 10 * kA);
}

TEST(DeviceArena, BestFitKeepsTheLargeHoleWhole) {
  DeviceArena arena(kBase, 20 * kA);
  void* a = arena.allocate(8 * kA);   // [0, 8)
  void* b = arena.allocate(kA);       // [8, 9)
  void* c = arena.allocate(2 * kA);   // [9, 11)
  void* d = arena.allocate(kA);       // [11, 12), then [12, 20) free
  ASSERT_TRUE(a && b && c && d);
  arena.release(a);  // hole of 8
  arena.release(c);  // hole of 2
  void* small = arena.allocate(2 * kA);
  EXPECT_EQ(offset_of(small), 9 * kA);  // the exact fit, not the start of a bigger hole
  EXPECT_EQ(arena.largest_free(), 8 * kA);
}

TEST(DeviceArena, StrayAndDoubleFreesAreRefused) {
  DeviceArena arena(kBase, 4 * kA);
  void* a = arena.allocate(kA);
  int outside = 0;
  EXPECT_EQ(arena.release(&outside), 0u);
  EXPECT_EQ(arena.release(kBase + 1), 0u);  // inside the pool, not a block start
  EXPECT_EQ(arena.release(a), kA);
  EXPECT_EQ(arena.release(a), 0u);
  EXPECT_EQ(arena.release(nullptr), 0u);
  EXPECT_EQ(arena.used(), 0u);
}

TEST(DeviceArena, RandomSequenceNeverOverlapsAndReturnsEverything) {
  const size_t capacity = 4096 * kA;
  DeviceArena arena(kBase, capacity);
  std::mt19937 rng(1234);
  std::map<size_t, size_t> live;  // offset -> rounded size, the model
  std::vector<void*> ptrs;
  size_t failures = 0;
  for (int step = 0; step < 20000; ++step) {
    const bool do_alloc = ptrs.empty() || rng() % 100 < 55;
    if (do_alloc) {
      const size_t bytes = 1 + rng() % (64 * kA);
      void* p = arena.allocate(bytes);
      if (!p) {
        ++failures;
        EXPECT_LT(arena.largest_free(), DeviceArena::round_up(bytes));
        continue;
      }
      const size_t off = offset_of(p), size = DeviceArena::round_up(bytes);
      ASSERT_EQ(off % kA, 0u);
      ASSERT_LE(off + size, capacity);
      auto next = live.lower_bound(off);
      if (next != live.end()) {
        ASSERT_LE(off + size, next->first) << "overlaps the next block";
      }
      if (next != live.begin()) {
        auto prev = std::prev(next);
        ASSERT_LE(prev->first + prev->second, off) << "overlaps the previous block";
      }
      live.emplace(off, size);
      ptrs.push_back(p);
    } else {
      const size_t i = rng() % ptrs.size();
      const size_t off = offset_of(ptrs[i]);
      ASSERT_EQ(arena.release(ptrs[i]), live.at(off));
      live.erase(off);
      ptrs[i] = ptrs.back();
      ptrs.pop_back();
    }
    size_t used = 0;
    for (auto& [off, size] : live) used += size;
    ASSERT_EQ(arena.used(), used);
  }
  EXPECT_GT(failures, 0u) << "the sequence should have filled the pool at least once";
  for (void* p : ptrs) arena.release(p);
  EXPECT_EQ(arena.used(), 0u);
  EXPECT_EQ(arena.free_blocks(), 1u);
  EXPECT_EQ(arena.largest_free(), capacity);
}

}  // namespace
}  // namespace llamaft
