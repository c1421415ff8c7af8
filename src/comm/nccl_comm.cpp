// The NCCL communicator (interface and contract in nccl_comm.hpp). Choices:
// - Communicators are blocking-mode NCCL communicators: every NCCL call
//   returns once its work is queued, and the host detects hangs by polling the
//   completion event with ncclCommGetAsyncError (blocking collectives,
//   Request::wait) or, while it is stuck inside a call, by the watchdog.
// - One Lane per family of communicators: the world communicator creates it
//   (the communication stream, non-blocking and at the highest priority; the
//   caller's compute stream; host staging buffers; the watchdog thread) and
//   split() children share it. All
//   collectives of the job therefore run on one stream in program order, which
//   is the same on every rank, so collectives of different communicators can
//   never wait on each other across ranks (hybrid_shard's replica all-reduce is
//   blocking, so a second stream would buy no overlap).
// - CommStats counts exactly what mpi_comm.cpp counts; wait_seconds is host
//   time blocked, so Request::wait(), which only queues a stream wait, adds
//   almost nothing: the GPU-side wait does not show there.
#include "comm/nccl_comm.hpp"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

#include "backend/cuda/cuda_check.hpp"
#include "core/error.hpp"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 18, 0)
#error "llamaft needs NCCL >= 2.18 (ncclCommSplit)"
#endif

namespace llamaft {
namespace {

// where_prefix() is empty before MPI is up; NCCL errors still name the host.
std::string nccl_where() {
  const std::string prefix = where_prefix();
  return prefix.empty() ? str_cat("[host ", process_host(), "] ") : prefix;
}

std::string last_error_suffix() {
  const char* last = ncclGetLastError(nullptr);
  return last && *last ? str_cat(" (", last, ")") : std::string();
}

}  // namespace
}  // namespace llamaft

#define NCCL_CHECK(stmt)                                                                              \
  do {                                                                                                \
    const ncclResult_t nccl_rc_ = (stmt);                                                             \
    if (nccl_rc_ != ncclSuccess)                                                                      \
      throw ::llamaft::Error(::llamaft::str_cat(::llamaft::nccl_where(), "NCCL error in `", #stmt,    \
                                                "` at ", __FILE__, ":", __LINE__, ": ",               \
                                                ncclGetErrorString(nccl_rc_),                         \
                                                ::llamaft::last_error_suffix()),                      \
                             ::llamaft::kExitCommFailure);                                            \
  } while (0)

namespace llamaft {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMinStagingBytes = size_t(64) << 10;
constexpr int kSpinPolls = 256;  // yield this many times before sleeping between polls
constexpr auto kPollSleep = std::chrono::microseconds(100);
constexpr auto kWatchdogTick = std::chrono::milliseconds(500);

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// "on rank 3 (host node12)", plus the position in a split communicator.
std::string describe(int world_rank, int rank, int size, bool is_world) {
  std::string where = str_cat("on rank ", world_rank, " (host ", process_host());
  if (!is_world) where += str_cat("; rank ", rank, " of ", size, " in a split communicator");
  return where + ")";
}

// One collective in flight on the communication stream.
struct PendingOp {
  const char* name = "";
  std::shared_ptr<const std::string> where;
  const void* owner = nullptr;  // the NcclComm that issued it
  Clock::time_point issued;
  cudaEvent_t done = nullptr;   // recorded on the communication stream after the collective
  PendingOp() = default;
  PendingOp(const PendingOp&) = delete;
  PendingOp& operator=(const PendingOp&) = delete;
  ~PendingOp() {
    if (done) cudaEventDestroy(done);
  }
};

// What a family of communicators shares: streams, staging, the watchdog.
class Lane {
 public:
  Lane(int device, cudaStream_t compute, double timeout_s)
      : device_(device), compute_(compute), timeout_s_(timeout_s),
        grace_s_(std::max(5.0, timeout_s / 4)) {
    CUDA_CHECK(cudaSetDevice(device));
    int least = 0, greatest = 0;
    CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest));  // ahead of compute kernels
    try {
      CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
      watchdog_ = std::thread([this] { watch(); });
    } catch (...) {
      if (ready_) cudaEventDestroy(ready_);
      cudaStreamDestroy(stream_);
      throw;
    }
  }
  ~Lane() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    watchdog_.join();
    pending_.clear();
    // Never throws; errors are ignored (the process is usually exiting).
    if (dev_stage_) cudaFree(dev_stage_);
    if (host_stage_) cudaFreeHost(host_stage_);
    cudaEventDestroy(ready_);
    cudaStreamDestroy(stream_);
  }
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cudaStream_t compute() const { return compute_; }
  double timeout_s() const { return timeout_s_; }

  // The communication stream waits for everything queued on the compute stream.
  void order_after_compute() {
    CUDA_CHECK(cudaEventRecord(ready_, compute_));
    CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
  }

  // Host buffers: copied into pinned memory, then to the device scratch on the
  // communication stream; stage_out queues the copy back, copy_out (after the
  // operation completed) hands the result over. Blocking collectives only, so
  // one buffer serves the whole family.
  void* stage_in(const void* data, size_t bytes) {
    if (bytes > stage_bytes_) {
      if (dev_stage_) CUDA_CHECK(cudaFree(dev_stage_));
      if (host_stage_) CUDA_CHECK(cudaFreeHost(host_stage_));
      dev_stage_ = host_stage_ = nullptr;
      stage_bytes_ = 0;
      const size_t want = std::max(bytes, kMinStagingBytes);
      CUDA_CHECK(cudaMalloc(&dev_stage_, want));
      CUDA_CHECK(cudaMallocHost(&host_stage_, want));
      stage_bytes_ = want;
    }
    std::memcpy(host_stage_, data, bytes);
    CUDA_CHECK(cudaMemcpyAsync(dev_stage_, host_stage_, bytes, cudaMemcpyHostToDevice, stream_));
    return dev_stage_;
  }
  void stage_out(size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(host_stage_, dev_stage_, bytes, cudaMemcpyDeviceToHost, stream_));
  }
  void copy_out(void* data, size_t bytes) const { std::memcpy(data, host_stage_, bytes); }

  void track(std::shared_ptr<PendingOp> op) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back(std::move(op));
  }
  // An aborted communicator's operations are no longer watched.
  void forget(const void* owner) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                  [owner](const std::shared_ptr<PendingOp>& op) { return op->owner == owner; }),
                   pending_.end());
  }

  // The host is inside an NCCL call that may block (init, split, a launch
  // that connects to peers, finalize, abort): the watchdog times it too.
  class HostCall {
   public:
    HostCall(Lane& lane, const char* name, std::shared_ptr<const std::string> where) noexcept : lane_(lane) {
      std::lock_guard<std::mutex> lock(lane_.mu_);
      lane_.call_name_ = name;
      lane_.call_where_ = std::move(where);
      lane_.call_since_ = Clock::now();
    }
    ~HostCall() {
      std::lock_guard<std::mutex> lock(lane_.mu_);
      lane_.call_name_ = nullptr;
      lane_.call_where_.reset();
    }
    HostCall(const HostCall&) = delete;
    HostCall& operator=(const HostCall&) = delete;

   private:
    Lane& lane_;
  };

 private:
  void watch() {
    cudaSetDevice(device_);  // event queries from this thread; an error here only weakens the watchdog
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, kWatchdogTick);
      if (stop_) break;
      // One stream: operations complete in the order they were queued. Errors
      // other than "not ready" are the host thread's to report.
      while (!pending_.empty() && cudaEventQuery(pending_.front()->done) != cudaErrorNotReady) pending_.pop_front();
      const double limit = timeout_s_ + grace_s_;
      if (!pending_.empty() && seconds_since(pending_.front()->issued) > limit)
        report(pending_.front()->name, *pending_.front()->where, seconds_since(pending_.front()->issued));
      if (call_name_ && seconds_since(call_since_) > limit)
        report(call_name_, call_where_ ? *call_where_ : std::string(), seconds_since(call_since_));
    }
  }
  // The host thread is stuck outside our polling loops: nothing can be thrown
  // to it, so end the process (a non-zero exit brings the launcher's job down).
  [[noreturn]] void report(const char* name, const std::string& where, double elapsed) const {
    std::fprintf(stderr,
                 "%sllamaft: error: NCCL %s timed out after %.0f s %s (timeout %g s; the watchdog found the host "
                 "blocked outside the communicator and ends the process with code %d)\n",
                 nccl_where().c_str(), name, elapsed, where.c_str(), timeout_s_, static_cast<int>(kExitCommFailure));
    std::fflush(stderr);
    std::_Exit(kExitCommFailure);
  }

  int device_;
  cudaStream_t compute_;
  double timeout_s_, grace_s_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
  void* dev_stage_ = nullptr;
  void* host_stage_ = nullptr;  // pinned
  size_t stage_bytes_ = 0;

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  bool stop_ = false;
  std::deque<std::shared_ptr<PendingOp>> pending_;
  const char* call_name_ = nullptr;
  std::shared_ptr<const std::string> call_where_;
  Clock::time_point call_since_;
  std::thread watchdog_;
};

class NcclComm;

class NcclRequest final : public Request {
 public:
  NcclRequest(NcclComm* comm, std::shared_ptr<PendingOp> op, cudaStream_t compute)
      : comm_(comm), op_(std::move(op)), compute_(compute) {}
  // Never leave the buffers unordered: the compute stream waits even if nobody called wait().
  ~NcclRequest() override {
    if (op_) cudaStreamWaitEvent(compute_, op_->done, 0);
  }
  void wait() override;

 private:
  NcclComm* comm_;
  std::shared_ptr<PendingOp> op_;
  cudaStream_t compute_;
};

class NcclComm final : public Communicator {
 public:
  NcclComm(std::shared_ptr<Lane> lane, ncclComm_t comm, int world_rank, bool is_world)
      : lane_(std::move(lane)), comm_(comm), world_rank_(world_rank) {
    try {
      NCCL_CHECK(ncclCommUserRank(comm_, &rank_));
      NCCL_CHECK(ncclCommCount(comm_, &size_));
      where_ = std::make_shared<const std::string>(describe(world_rank_, rank_, size_, is_world));
    } catch (...) {
      ncclCommAbort(comm_);
      throw;
    }
  }
  // Never throws. Unwinding after an error (a peer may be gone): abort, which
  // does not wait for the other ranks; otherwise finalize, which flushes
  // what is still queued, then destroy.
  ~NcclComm() override {
    if (!comm_) return;
    lane_->forget(this);
    Lane::HostCall call(*lane_, "communicator destruction", where_);
    if (std::uncaught_exceptions() > 0 || ncclCommFinalize(comm_) != ncclSuccess) {
      ncclCommAbort(comm_);
    } else {
      ncclCommDestroy(comm_);
    }
  }
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl"; }

  RequestPtr all_gather(const float* in, float* out, size_t count) override {
    stats_.all_gather_bytes += count * sizeof(float);
    stats_.calls++;
    require_device("all_gather", count, in, out);
    auto op = begin("all_gather", /*after_compute=*/true);
    {
      Lane::HostCall call(*lane_, op->name, where_);
      NCCL_CHECK(ncclAllGather(in, out, count, ncclFloat32, comm_, lane_->stream()));
    }
    end(op);
    return std::make_unique<NcclRequest>(this, std::move(op), lane_->compute());
  }
  RequestPtr reduce_scatter_sum_bf16(const uint16_t* in, uint16_t* out, size_t count) override {
    return reduce_scatter("reduce_scatter_sum_bf16", in, out, count, ncclBfloat16, sizeof(uint16_t));
  }
  RequestPtr reduce_scatter_sum(const float* in, float* out, size_t count) override {
    return reduce_scatter("reduce_scatter_sum", in, out, count, ncclFloat32, sizeof(float));
  }
  void all_reduce_sum(float* data, size_t count) override {
    timed([&] { all_reduce("all_reduce_sum", data, count, ncclFloat32, ncclSum); });
    stats_.all_reduce_bytes += count * sizeof(float);
  }
  void all_reduce_sum(double* data, size_t count) override {
    timed([&] { all_reduce("all_reduce_sum", data, count, ncclFloat64, ncclSum); });
    stats_.all_reduce_bytes += count * sizeof(double);
  }
  void all_reduce_max(int64_t* data, size_t count) override {
    timed([&] { all_reduce("all_reduce_max", data, count, ncclInt64, ncclMax); });
    stats_.all_reduce_bytes += count * sizeof(int64_t);
  }
  void broadcast(void* data, size_t bytes, int root) override {
    LLAMAFT_CHECK(root >= 0 && root < size_, "broadcast root ", root, " outside a communicator of ", size_);
    timed([&] {
      in_place("broadcast", data, bytes, [&](void* buf) {
        NCCL_CHECK(ncclBroadcast(buf, buf, bytes, ncclUint8, root, comm_, lane_->stream()));
      });
    });
  }
  // NCCL has no gather: each rank's part is broadcast in turn (its size
  // first, for gatherv) and the root keeps it. Host-side bookkeeping only.
  void gather(const void* in, void* out, size_t bytes, int root) override {
    std::vector<uint64_t> counts(static_cast<size_t>(size_), bytes);
    gatherv(in, bytes, out, counts, root);
  }
  void gatherv(const void* in, size_t bytes, void* out, const std::vector<uint64_t>&, int root) override {
    size_t at = 0;
    for (int r = 0; r < size_; ++r) {
      uint64_t n = bytes;
      broadcast(&n, sizeof(n), r);
      std::vector<char> part(n);
      if (r == rank_ && n) std::memcpy(part.data(), in, n);
      if (n) broadcast(part.data(), n, r);
      if (rank_ == root && n) std::memcpy(static_cast<char*>(out) + at, part.data(), n);
      at += n;
    }
  }
  // A one-element all-reduce that every rank must join.
  void barrier() override {
    timed([&] {
      float token = 0;
      in_place("barrier", &token, sizeof(token), [&](void* buf) {
        NCCL_CHECK(ncclAllReduce(buf, buf, 1, ncclFloat32, ncclSum, comm_, lane_->stream()));
      });
    });
  }
  // ncclCommSplit (collective over this communicator); the child inherits
  // this configuration and shares this Lane (stream, staging, watchdog).
  std::unique_ptr<Communicator> split(int color, int key) override {
    LLAMAFT_CHECK(color >= 0, "split color ", color, " must be non-negative");
    require_usable("split");
    check_async("split");
    ncclComm_t child = nullptr;
    {
      Lane::HostCall call(*lane_, "split", where_);
      NCCL_CHECK(ncclCommSplit(comm_, color, key, &child, nullptr));
    }
    LLAMAFT_CHECK(child != nullptr, "ncclCommSplit returned no communicator for color ", color);
    return std::make_unique<NcclComm>(lane_, child, world_rank_, /*is_world=*/false);
  }

  // Request::wait(): fail fast on an NCCL error or an overdue collective,
  // then make the compute stream wait for it (no host synchronisation).
  void complete_on_compute(const PendingOp& op) {
    require_usable(op.name);
    check_async(op.name);
    const cudaError_t rc = cudaEventQuery(op.done);
    if (rc == cudaErrorNotReady) {
      if (seconds_since(op.issued) > lane_->timeout_s()) fail(op.name, timed_out());
    } else if (rc != cudaSuccess) {
      CUDA_CHECK(cudaEventQuery(op.done));
    }
    CUDA_CHECK(cudaStreamWaitEvent(lane_->compute(), op.done, 0));
  }

 private:
  template <typename F>
  void timed(F&& f) {
    const auto t0 = Clock::now();
    f();
    stats_.calls++;
    stats_.wait_seconds += seconds_since(t0);
  }

  template <typename T>
  void all_reduce(const char* name, T* data, size_t count, ncclDataType_t type, ncclRedOp_t op) {
    in_place(name, data, count * sizeof(T), [&](void* buf) {
      NCCL_CHECK(ncclAllReduce(buf, buf, count, type, op, comm_, lane_->stream()));
    });
  }

  // A blocking in-place collective on a device or host buffer: returns with
  // the result in `data`.
  template <typename F>
  void in_place(const char* name, void* data, size_t bytes, F&& enqueue) {
    if (bytes == 0) return;
    const bool on_device = device_buffer(name, data);
    auto op = begin(name, /*after_compute=*/on_device);
    void* buf = on_device ? data : lane_->stage_in(data, bytes);
    {
      Lane::HostCall call(*lane_, name, where_);
      enqueue(buf);
    }
    if (!on_device) lane_->stage_out(bytes);
    end(op);
    await(*op);
    if (!on_device) lane_->copy_out(data, bytes);
  }

  std::shared_ptr<PendingOp> begin(const char* name, bool after_compute) {
    require_usable(name);
    check_async(name);
    auto op = std::make_shared<PendingOp>();
    op->name = name;
    op->where = where_;
    op->owner = this;
    op->issued = Clock::now();
    CUDA_CHECK(cudaEventCreateWithFlags(&op->done, cudaEventDisableTiming));
    if (after_compute) lane_->order_after_compute();
    return op;
  }
  void end(const std::shared_ptr<PendingOp>& op) {
    CUDA_CHECK(cudaEventRecord(op->done, lane_->stream()));
    lane_->track(op);
  }

  // Poll until the collective completes, an NCCL error shows or it is overdue.
  void await(const PendingOp& op) {
    for (int polls = 0;; ++polls) {
      const cudaError_t rc = cudaEventQuery(op.done);
      if (rc == cudaSuccess) break;
      if (rc != cudaErrorNotReady) CUDA_CHECK(cudaEventQuery(op.done));
      check_async(op.name);
      if (seconds_since(op.issued) > lane_->timeout_s()) fail(op.name, timed_out());
      if (polls < kSpinPolls) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(kPollSleep);
      }
    }
    check_async(op.name);
  }

  void check_async(const char* name) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(comm_, &state);
    if (rc != ncclSuccess) state = rc;
    if (state != ncclSuccess && state != ncclInProgress)
      fail(name, str_cat("failed: ", ncclGetErrorString(state), last_error_suffix()));
  }

  std::string timed_out() const { return str_cat("timed out after ", lane_->timeout_s(), " s"); }

  // Abort (other ranks blocked in this collective see a remote error) and throw.
  [[noreturn]] void fail(const char* name, const std::string& why) {
    const std::string msg = str_cat("NCCL ", name, " ", why, " ", *where_);
    abort_comm();
    throw Error(msg, kExitCommFailure);
  }
  void abort_comm() noexcept {
    if (!comm_) return;
    lane_->forget(this);
    Lane::HostCall call(*lane_, "ncclCommAbort", where_);
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  void require_usable(const char* name) const {
    if (!comm_)
      throw Error(str_cat("NCCL ", name, " called ", *where_, " on a communicator aborted after an earlier failure"),
                  kExitCommFailure);
  }

  // True for memory the GPU can address directly (the backend's buffers),
  // false for host memory, which the blocking collectives stage.
  bool device_buffer(const char* name, const void* p) const {
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
      cudaGetLastError();  // an unknown pointer is plain host memory
      return false;
    }
    if (attr.type == cudaMemoryTypeDevice)
      LLAMAFT_CHECK(attr.device == lane_->device(), "NCCL ", name, ": buffer on device ", attr.device,
                    " but the communicator is on device ", lane_->device());
    return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
  }
  RequestPtr reduce_scatter(const char* name, const void* in, void* out, size_t count, ncclDataType_t type,
                            size_t elem_bytes) {
    stats_.reduce_scatter_bytes += count * size_ * elem_bytes;
    stats_.calls++;
    require_device(name, count, in, out);
    auto op = begin(name, /*after_compute=*/true);
    {
      Lane::HostCall call(*lane_, op->name, where_);
      NCCL_CHECK(ncclReduceScatter(in, out, count, type, ncclSum, comm_, lane_->stream()));
    }
    end(op);
    return std::make_unique<NcclRequest>(this, std::move(op), lane_->compute());
  }
  void require_device(const char* name, size_t count, const void* in, const void* out) const {
    if (count == 0) return;
    LLAMAFT_CHECK(device_buffer(name, in) && device_buffer(name, out), "NCCL ", name,
                  " needs device buffers (the CUDA backend's memory), not host memory");
  }

  std::shared_ptr<Lane> lane_;  // declared first: outlives comm_
  ncclComm_t comm_;
  int world_rank_ = 0, rank_ = 0, size_ = 1;
  std::shared_ptr<const std::string> where_;
};

void NcclRequest::wait() {
  if (!op_) return;
  const auto t0 = Clock::now();
  comm_->complete_on_compute(*op_);
  op_.reset();
  comm_->stats().wait_seconds += seconds_since(t0);
}

}  // namespace

std::string nccl_library_version() {
  int code = 0;
  NCCL_CHECK(ncclGetVersion(&code));
  // NCCL >= 2.9 encodes major * 10000 + minor * 100 + patch.
  return str_cat(code / 10000, ".", code / 100 % 100, ".", code % 100);
}

std::unique_ptr<Communicator> make_nccl_world_comm(int device, double timeout_s, CUstream_st* compute_stream) {
  LLAMAFT_REQUIRE(timeout_s > 0, "the NCCL timeout must be positive (got ", timeout_s, " s)");
  int version = 0;
  NCCL_CHECK(ncclGetVersion(&version));
  LLAMAFT_REQUIRE(version >= NCCL_VERSION(2, 18, 0), "NCCL ", nccl_library_version(),
                  " is loaded, but llamaft needs NCCL >= 2.18 (ncclCommSplit); check LD_LIBRARY_PATH");
  int rank = 0, size = 1;
  const bool with_mpi = mpi_active();
  if (with_mpi) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
  }
  CUDA_CHECK(cudaSetDevice(device));
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  if (with_mpi && size > 1) {
    const int rc = MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS)
      throw Error(str_cat(nccl_where(), "MPI_Bcast of the NCCL unique id failed (MPI error ", rc, ")"),
                  kExitCommFailure);
  }
  auto lane = std::make_shared<Lane>(device, compute_stream, timeout_s);
  ncclComm_t comm = nullptr;
  {
    Lane::HostCall call(*lane, "ncclCommInitRank",
                        std::make_shared<const std::string>(describe(rank, rank, size, /*is_world=*/true)));
    NCCL_CHECK(ncclCommInitRank(&comm, size, id, rank));
  }
  return std::make_unique<NcclComm>(std::move(lane), comm, rank, /*is_world=*/true);
}

}  // namespace llamaft
