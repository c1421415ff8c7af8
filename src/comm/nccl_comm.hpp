// The NCCL communicator for the CUDA backend: the Communicator interface over
// device buffers, one GPU per rank. No CUDA or NCCL headers here (the stream
// type is forward-declared, as in cuda_backend.hpp), so the CLI can include it.
//
// Streams: collectives run on a dedicated communication stream, ordered after
// the work already queued on the compute stream (the CUDA backend's stream)
// by an event. all_gather / reduce_scatter_sum return at once; Request::wait()
// makes the compute stream wait for the collective without blocking the host.
// The blocking collectives return once the result is in the buffer; they also
// accept host buffers (the trainer's loss sums and flags live on the stack),
// staged through pinned memory.
//
// Hangs: blocking collectives poll their completion together with
// ncclCommGetAsyncError; an NCCL error or timeout_s without progress aborts
// the communicator (ncclCommAbort) and throws llamaft::Error (kExitCommFailure)
// naming the collective, rank and host, which main() turns into end_job.
// A watchdog thread covers the host being blocked elsewhere (a stream sync in
// the backend, an NCCL call that does not return): it prints the same message
// and ends the process once an operation is overdue by timeout_s plus a grace
// of max(5 s, timeout_s / 4), so the launcher brings every rank down.
//
// Built only with the CUDA backend: comm/registry.cpp's
// make_device_communicator is the one caller outside the tests.
#pragma once

#include <memory>
#include <string>

#include "comm/communicator.hpp"

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace llamaft {

// Every rank of MPI_COMM_WORLD, or this process alone when MPI is not up: the
// ncclUniqueId comes from rank 0 over MPI_Bcast, then ncclCommInitRank on
// `device`. compute_stream is the stream the buffers are produced and consumed
// on (CudaBackend::stream()); nullptr means the legacy default stream.
// Collectives that make no progress for timeout_s seconds abort the job.
// split() children share the parent's communication stream (see nccl_comm.cpp).
std::unique_ptr<Communicator> make_nccl_world_comm(int device, double timeout_s,
                                                   CUstream_st* compute_stream = nullptr);

// "2.28.9": the NCCL library linked at run time.
std::string nccl_library_version();

}  // namespace llamaft
