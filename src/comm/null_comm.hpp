// A stand-in communicator that moves nothing: rank `rank` of `size`, whose
// collectives return at once and count in stats() the bytes a real
// communicator would (MpiCommunicator's convention), and whose split() hands
// out the sizes queued for it, in order. `llamaft plan` runs FSDP over it at
// any np without any rank existing; the CUDA step-counter dump uses it for
// the collectives' bytes of a sharded step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.hpp"
#include "core/error.hpp"

namespace llamaft {

class NullComm final : public Communicator {
 public:
  NullComm(int size, int rank, std::vector<int> split_sizes = {})
      : size_(size), rank_(rank), split_sizes_(std::move(split_sizes)) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "null"; }
  RequestPtr all_gather(const float*, float*, size_t count) override {
    return counted(stats_.all_gather_bytes, sizeof(float) * count);
  }
  RequestPtr reduce_scatter_sum(const float*, float*, size_t count) override {
    return counted(stats_.reduce_scatter_bytes, sizeof(float) * count * static_cast<size_t>(size_));
  }
  RequestPtr reduce_scatter_sum_bf16(const uint16_t*, uint16_t*, size_t count) override {
    return counted(stats_.reduce_scatter_bytes, sizeof(uint16_t) * count * static_cast<size_t>(size_));
  }
  void all_reduce_sum(float*, size_t count) override { stats_.all_reduce_bytes += sizeof(float) * count; }
  void all_reduce_sum(double*, size_t count) override { stats_.all_reduce_bytes += sizeof(double) * count; }
  void all_reduce_max(int64_t*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  void gather(const void*, void*, size_t, int) override {}
  void gatherv(const void*, size_t, void*, const std::vector<uint64_t>&, int) override {}
  void barrier() override {}
  std::unique_ptr<Communicator> split(int, int) override {
    LLAMAFT_CHECK(next_ < split_sizes_.size(), "NullComm: a split nobody queued a size for");
    return std::make_unique<NullComm>(split_sizes_[next_++], 0);
  }

 private:
  class Done final : public Request {
   public:
    void wait() override {}
  };
  RequestPtr counted(uint64_t& total, size_t bytes) {
    total += bytes;
    ++stats_.calls;
    return std::make_unique<Done>();
  }
  int size_, rank_;
  std::vector<int> split_sizes_;
  size_t next_ = 0;
};

}  // namespace llamaft
