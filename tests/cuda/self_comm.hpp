// A communicator of one rank for the CUDA model tests: FSDP over it issues
// no collectives, and the optimizer's host all-reduces are identities.
#pragma once

#include <cstring>
#include <memory>
#include <vector>
#include <string>

#include "comm/communicator.hpp"
#include "core/error.hpp"

namespace llamaft::cuda_test {

class SelfComm final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "self"; }
  RequestPtr all_gather(const float*, float*, size_t) override { LLAMAFT_FAIL("SelfComm: unexpected all_gather"); }
  RequestPtr reduce_scatter_sum(const float*, float*, size_t) override {
    LLAMAFT_FAIL("SelfComm: unexpected reduce_scatter");
  }
  RequestPtr reduce_scatter_sum_bf16(const uint16_t*, uint16_t*, size_t) override {
    LLAMAFT_FAIL("SelfComm: unexpected reduce_scatter");
  }
  void all_reduce_sum(float*, size_t) override {}
  void all_reduce_sum(double*, size_t) override {}
  void all_reduce_max(int64_t*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  void gather(const void* in, void* out, size_t bytes, int) override {
    if (bytes) std::memcpy(out, in, bytes);
  }
  void gatherv(const void* in, size_t bytes, void* out, const std::vector<uint64_t>&, int) override {
    if (bytes) std::memcpy(out, in, bytes);
  }
  void barrier() override {}
  std::unique_ptr<Communicator> split(int, int) override { return std::make_unique<SelfComm>(); }
};

}  // namespace llamaft::cuda_test
