// One collectives API for every backend (the model of LLNL Aluminum): MPI on
// the CPU backend, NCCL on GPUs. Buffers live in the backend's memory space.
// Non-blocking collectives return a Request; wait() completes it. Every
// communicator counts the bytes it sends so tests can check the analytic
// FSDP communication volume.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llamaft {

class Request {
 public:
  virtual ~Request() = default;
  virtual void wait() = 0;
};
using RequestPtr = std::unique_ptr<Request>;

struct CommStats {
  uint64_t all_gather_bytes = 0;      // bytes this rank contributed to all-gathers
  uint64_t reduce_scatter_bytes = 0;  // bytes this rank fed into reduce-scatters
  uint64_t all_reduce_bytes = 0;
  uint64_t calls = 0;
  double wait_seconds = 0;            // time blocked in wait()/blocking collectives
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;

  // out(size * count) = concat over ranks of in(count). Non-blocking.
  virtual RequestPtr all_gather(const float* in, float* out, size_t count) = 0;
  // out(count) = sum over ranks of in[rank*count .. (rank+1)*count). Non-blocking.
  virtual RequestPtr reduce_scatter_sum(const float* in, float* out, size_t count) = 0;
  // The same over bf16 bit patterns (fsdp.reduce_dtype = bf16, torch's
  // MixedPrecision reduce_dtype): count bf16 values a rank, every partial sum
  // rounded to bf16 (nearest even), as NCCL's bf16 reduction does. Non-blocking.
  virtual RequestPtr reduce_scatter_sum_bf16(const uint16_t* in, uint16_t* out, size_t count) = 0;
  // In-place sums and maxima (blocking).
  virtual void all_reduce_sum(float* data, size_t count) = 0;
  virtual void all_reduce_sum(double* data, size_t count) = 0;
  virtual void all_reduce_max(int64_t* data, size_t count) = 0;
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // Host bytes to `root` (blocking): out(size * bytes) = concat over ranks of
  // in(bytes); out is written on root only.
  virtual void gather(const void* in, void* out, size_t bytes, int root) = 0;
  // The same with a count per rank: root passes every rank's byte count in
  // `counts` (from a gather() of them) and receives their concatenation.
  virtual void gatherv(const void* in, size_t bytes, void* out, const std::vector<uint64_t>& counts, int root) = 0;
  virtual void barrier() = 0;
  // Sub-communicator of the ranks with the same color, ordered by key.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  CommStats& stats() { return stats_; }

 protected:
  CommStats stats_;
};

// Process-wide MPI state: world rank/size and local rank (ranks on this node).
struct MpiWorld {
  int rank = 0, size = 1, local_rank = 0, local_size = 1;
};
// MPI_Init (if needed) and the node split; idempotent.
MpiWorld init_mpi(int* argc, char*** argv);
// What init_mpi found (not collective; all zeros and ones before it ran).
MpiWorld mpi_world();
bool mpi_active();
// Every rank's hostname, on every rank (collective over MPI_COMM_WORLD).
std::vector<std::string> all_hostnames();
std::string mpi_library_version();
void finalize_mpi();  // no-op when MPI is not up
std::unique_ptr<Communicator> make_mpi_world_comm();
// Collective over the world: every rank passes its exit code (0: fine).
// Returns the lowest rank whose code is not 0, or -1 when every rank is fine;
// `code` becomes the largest code.
int agree_on_failure(int& code);
// Ends this rank with `code` after an error it has reported. With more than
// one rank it exits at once without MPI_Finalize: mpirun (and srun -K1) see
// a non-zero exit and end the job's other ranks, and mpirun exits with this
// code. With one rank MPI is finalised first.
[[noreturn]] void end_job(int code);

}  // namespace llamaft
