// The MPI communicator (mpi_comm.hpp) and the process-wide MPI state.
#include "comm/mpi_comm.hpp"

#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "comm/watchdog.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"

#define MPI_CHECK(stmt)                                                                              \
  do {                                                                                               \
    const int mpi_rc_ = (stmt);                                                                      \
    if (mpi_rc_ != MPI_SUCCESS) {                                                                    \
      char mpi_msg_[MPI_MAX_ERROR_STRING];                                                           \
      int mpi_len_ = 0;                                                                              \
      MPI_Error_string(mpi_rc_, mpi_msg_, &mpi_len_);                                                \
      throw ::llamaft::Error(::llamaft::str_cat(::llamaft::where_prefix(), "MPI error in ", #stmt,   \
                                                " at ", __FILE__, ":", __LINE__, ": ", mpi_msg_),    \
                             ::llamaft::kExitCommFailure);                                           \
    }                                                                                                \
  } while (0)

namespace llamaft {

namespace {

using Clock = std::chrono::steady_clock;

class MpiRequest final : public Request {
 public:
  MpiRequest(MPI_Request req, CommStats* stats, const char* what, const std::string* members)
      : req_(req), stats_(stats), what_(what), members_(members) {}
  ~MpiRequest() override {
    if (req_ != MPI_REQUEST_NULL) MPI_Wait(&req_, MPI_STATUS_IGNORE);  // never leak an in-flight op
  }
  void wait() override {
    const auto t0 = Clock::now();
    WatchdogScope watch(what_, members_);
    MPI_CHECK(MPI_Wait(&req_, MPI_STATUS_IGNORE));
    stats_->wait_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  }

 private:
  MPI_Request req_;
  CommStats* stats_;
  const char* what_;
  const std::string* members_;
};

// "the world (4 ranks)" or "ranks 1, 3 of 4": who a collective waits for.
std::string describe_members(MPI_Comm comm) {
  int size = 1, world = 1;
  MPI_Comm_size(comm, &size);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (size == world) return str_cat("the world (", world, " ranks)");
  MPI_Group group, world_group;
  MPI_Comm_group(comm, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  std::vector<int> mine(static_cast<size_t>(size)), theirs(static_cast<size_t>(size));
  for (int i = 0; i < size; ++i) mine[static_cast<size_t>(i)] = i;
  MPI_Group_translate_ranks(group, size, mine.data(), world_group, theirs.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
  std::string list;
  for (int i = 0; i < size && i < 16; ++i) list += (i ? ", " : "") + std::to_string(theirs[static_cast<size_t>(i)]);
  if (size > 16) list += ", ...";
  return str_cat("ranks ", list, " of ", world);
}

int checked(size_t count) {
  LLAMAFT_CHECK(count <= static_cast<size_t>(INT32_MAX), "collective of ", count,
                " elements exceeds MPI's int count; split the unit");
  return static_cast<int>(count);
}

MpiWorld g_world;
bool g_initialized_here = false;

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  members_ = describe_members(comm_);
}

MpiCommunicator::~MpiCommunicator() {
  if (owned_ && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

template <typename F>
void MpiCommunicator::timed(const char* what, F&& f) {
  const auto t0 = Clock::now();
  {
    WatchdogScope watch(what, &members_);
    f();
  }
  stats_.calls++;
  stats_.wait_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::duplicate() const {
  MPI_Comm dup;
  MPI_CHECK(MPI_Comm_dup(comm_, &dup));
  return std::make_unique<MpiCommunicator>(dup, true);
}

RequestPtr MpiCommunicator::all_gather(const float* in, float* out, size_t count) {
  MPI_Request req;
  stats_.all_gather_bytes += count * sizeof(float);
  stats_.calls++;
  MPI_CHECK(MPI_Iallgather(in, checked(count), MPI_FLOAT, out, checked(count), MPI_FLOAT, comm_, &req));
  return std::make_unique<MpiRequest>(req, &stats_, "all_gather", &members_);
}

RequestPtr MpiCommunicator::reduce_scatter_sum(const float* in, float* out, size_t count) {
  MPI_Request req;
  stats_.reduce_scatter_bytes += count * size_ * sizeof(float);
  stats_.calls++;
  MPI_CHECK(MPI_Ireduce_scatter_block(in, out, checked(count), MPI_FLOAT, MPI_SUM, comm_, &req));
  return std::make_unique<MpiRequest>(req, &stats_, "reduce_scatter", &members_);
}

namespace {
// MPI has no bf16: a user op over 16-bit words, widened, added in fp32 and
// rounded back to nearest even after every pairwise sum.
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
}
MPI_Op bf16_sum_op() {
  static MPI_Op op = [] {
    MPI_Op o;
    MPI_CHECK(MPI_Op_create(&bf16_sum, /*commute=*/1, &o));
    return o;
  }();
  return op;
}
}  // namespace

RequestPtr MpiCommunicator::reduce_scatter_sum_bf16(const uint16_t* in, uint16_t* out, size_t count) {
  MPI_Request req;
  stats_.reduce_scatter_bytes += count * size_ * sizeof(uint16_t);
  stats_.calls++;
  MPI_CHECK(MPI_Ireduce_scatter_block(in, out, checked(count), MPI_UINT16_T, bf16_sum_op(), comm_, &req));
  return std::make_unique<MpiRequest>(req, &stats_, "reduce_scatter", &members_);
}

void MpiCommunicator::all_reduce_sum(float* data, size_t count) {
  timed("all_reduce_sum", [&] { MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data, checked(count), MPI_FLOAT, MPI_SUM, comm_)); });
  stats_.all_reduce_bytes += count * sizeof(float);
}

void MpiCommunicator::all_reduce_sum(double* data, size_t count) {
  timed("all_reduce_sum", [&] { MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data, checked(count), MPI_DOUBLE, MPI_SUM, comm_)); });
  stats_.all_reduce_bytes += count * sizeof(double);
}

void MpiCommunicator::all_reduce_max(int64_t* data, size_t count) {
  timed("all_reduce_max", [&] { MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data, checked(count), MPI_INT64_T, MPI_MAX, comm_)); });
  stats_.all_reduce_bytes += count * sizeof(int64_t);
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
  timed("broadcast", [&] { MPI_CHECK(MPI_Bcast(data, checked(bytes), MPI_BYTE, root, comm_)); });
}

void MpiCommunicator::gather(const void* in, void* out, size_t bytes, int root) {
  timed("gather", [&] { MPI_CHECK(MPI_Gather(in, checked(bytes), MPI_BYTE, out, checked(bytes), MPI_BYTE, root, comm_)); });
}

void MpiCommunicator::gatherv(const void* in, size_t bytes, void* out, const std::vector<uint64_t>& counts, int root) {
  std::vector<int> sizes, displs;
  if (rank_ == root) {
    LLAMAFT_CHECK(counts.size() == static_cast<size_t>(size_), "gatherv: ", counts.size(), " counts for ", size_,
                  " ranks");
    size_t at = 0;
    for (const uint64_t c : counts) {
      sizes.push_back(checked(c));
      displs.push_back(checked(at));
      at += c;
    }
  }
  timed("gatherv", [&] {
    MPI_CHECK(MPI_Gatherv(in, checked(bytes), MPI_BYTE, out, sizes.data(), displs.data(), MPI_BYTE, root, comm_));
  });
}

void MpiCommunicator::barrier() {
  timed("barrier", [&] { MPI_CHECK(MPI_Barrier(comm_)); });
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  MPI_Comm sub;
  {
    WatchdogScope watch("comm_split", &members_);
    MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
  }
  return std::make_unique<MpiCommunicator>(sub, true);
}

MpiWorld mpi_world() { return g_world; }

MpiWorld init_mpi(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // Funneled: only the main thread calls MPI. OpenMP's threads and an
    // asynchronous checkpoint's writer thread never do.
    int provided = MPI_THREAD_SINGLE;
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    LLAMAFT_REQUIRE(provided >= MPI_THREAD_FUNNELED, "this MPI library offers thread level ", provided,
                    "; llamaft needs MPI_THREAD_FUNNELED");
    g_initialized_here = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_world.size);
  MPI_Comm node;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_world.rank, MPI_INFO_NULL, &node));
  MPI_Comm_rank(node, &g_world.local_rank);
  MPI_Comm_size(node, &g_world.local_size);
  MPI_Comm_free(&node);
  set_process_identity(g_world.rank, g_world.size);
  return g_world;
}

bool mpi_active() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

std::unique_ptr<MpiCommunicator> make_mpi_world_communicator() {
  LLAMAFT_CHECK(mpi_active(), "MPI is not initialised");
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, false);
}

std::unique_ptr<Communicator> make_mpi_world_comm() { return make_mpi_world_communicator(); }

std::vector<std::string> all_hostnames() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  char mine[256] = {0};
  std::snprintf(mine, sizeof(mine), "%s", process_host().c_str());
  std::vector<char> all(static_cast<size_t>(size) * sizeof(mine));
  static const std::string kWorld = "the world";
  WatchdogScope watch("all_gather of host names", &kWorld);
  MPI_CHECK(MPI_Allgather(mine, sizeof(mine), MPI_CHAR, all.data(), sizeof(mine), MPI_CHAR, MPI_COMM_WORLD));
  std::vector<std::string> out;
  for (int r = 0; r < size; ++r) out.emplace_back(all.data() + static_cast<size_t>(r) * sizeof(mine));
  return out;
}

std::string mpi_library_version() {
  char buf[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  MPI_Get_library_version(buf, &len);
  std::string v(buf, static_cast<size_t>(len));
  const auto nl = v.find_first_of("\r\n,");
  return nl == std::string::npos ? v : v.substr(0, nl);
}

void finalize_mpi() {
  if (mpi_active()) MPI_Finalize();
}

int agree_on_failure(int& code) {
  int64_t v[2] = {code, code != 0 ? -static_cast<int64_t>(g_world.rank) : INT64_MIN};  // max of -rank: lowest rank
  static const std::string kWorld = "the world";
  {
    WatchdogScope watch("agreement on the configuration", &kWorld);
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD));
  }
  code = static_cast<int>(v[0]);
  return v[0] == 0 ? -1 : static_cast<int>(-v[1]);
}

// A launcher reads a rank's output through pipes. With other ranks to bring
// down, wait, at most 2 s, until it has read what this rank wrote: MPICH's Hydra, told of an MPI_Abort,
// tears the job down without reading what is still in the aborting rank's
// pipes, and the one line saying why was lost (1 run in 4 of the ENOSPC
// check in mpi_checkpoint_faults).
static void wait_until_output_read() {
  for (int fd : {STDOUT_FILENO, STDERR_FILENO}) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) continue;
    for (int i = 0; i < 200; ++i) {
      int unread = 0;
      if (ioctl(fd, FIONREAD, &unread) != 0 || unread == 0) break;
      usleep(10000);
    }
  }
}

void end_job(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  int size = 1;
  if (mpi_active()) MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size == 1) finalize_mpi();
  else wait_until_output_read();
  // MPICH's Hydra reports the code of a rank that exits on its own only some
  // of the time once it has killed the others (exit 9 or 1 instead of 2 in
  // 1 of 3 runs of the test where rank 1 fails); through MPI_Abort it
  // reported the rank's code every time, at the cost of MPICH's one-line
  // "application called MPI_Abort" after ours. Open MPI's mpirun reports the
  // code either way, and its MPI_Abort prints a help text: exit there.
  if (size > 1 && mpi_library_version().find("MPICH") != std::string::npos) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace llamaft
