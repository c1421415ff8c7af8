// The MPI communicator: non-blocking MPI-3 collectives (MPI_Iallgather,
// MPI_Ireduce_scatter_block) so FSDP can prefetch the next unit's gather.
// Everything else speaks to it through Communicator; only comm/ and the
// tests that build one over MPI_COMM_SELF see MPI itself.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.hpp"

namespace llamaft {

class MpiCommunicator final : public Communicator {
 public:
  // owned: MPI_Comm_free on destruction (splits and duplicates).
  MpiCommunicator(MPI_Comm comm, bool owned);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }
  // "the world (4 ranks)" or "ranks 0, 2 of 4": who its collectives wait for.
  const std::string& members() const { return members_; }
  // Collective: the same ranks in a communicator of their own (MPI_Comm_dup),
  // with its own CommStats, so a library's traffic is not counted as FSDP's.
  std::unique_ptr<MpiCommunicator> duplicate() const;

  RequestPtr all_gather(const float* in, float* out, size_t count) override;
  RequestPtr reduce_scatter_sum(const float* in, float* out, size_t count) override;
  RequestPtr reduce_scatter_sum_bf16(const uint16_t* in, uint16_t* out, size_t count) override;
  void all_reduce_sum(float* data, size_t count) override;
  void all_reduce_sum(double* data, size_t count) override;
  void all_reduce_max(int64_t* data, size_t count) override;
  void broadcast(void* data, size_t bytes, int root) override;
  void gather(const void* in, void* out, size_t bytes, int root) override;
  void gatherv(const void* in, size_t bytes, void* out, const std::vector<uint64_t>& counts, int root) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;

 private:
  // Blocking call f, timed into stats() and watched by the collective watchdog.
  template <typename F>
  void timed(const char* what, F&& f);
  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
  std::string members_;  // who a collective waits for, for the watchdog's message
};

// MPI_COMM_WORLD (not owned); MPI must be up. make_mpi_world_comm() is the
// same behind the plain Communicator interface.
std::unique_ptr<MpiCommunicator> make_mpi_world_communicator();

}  // namespace llamaft
