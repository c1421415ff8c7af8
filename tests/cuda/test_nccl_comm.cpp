// The NCCL communicator on device buffers, against values computed on the
// host for any world size: alone it is a one-rank communicator; under a
// launcher (`mpirun -n 2 build/tests/cuda_tests --gtest_filter='Nccl*'` on a
// node with two GPUs) every rank runs the same checks over MPI_COMM_WORLD.
// Also: ordering against the compute stream, host buffers, split, the byte
// counters MPI reports, and the timeout path. Skips without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/cuda_backend.hpp"
#include "comm/communicator.hpp"
#include "comm/nccl_comm.hpp"
#include "core/error.hpp"
#include "cuda_test_util.hpp"

namespace llamaft {
namespace {

constexpr double kTimeoutS = 120;

// MPI comes up only when a launcher started this binary; finalize is a no-op otherwise.
class MpiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
      if (std::getenv(var)) {
        world_ = init_mpi(nullptr, nullptr);
        break;
      }
  }
  void TearDown() override { finalize_mpi(); }
  static MpiWorld world_;
};
MpiWorld MpiEnvironment::world_;
::testing::Environment* const kMpiEnvironment = ::testing::AddGlobalTestEnvironment(new MpiEnvironment);

TEST(NcclComm, PickLocalDeviceNamesTheHostWithoutAGpu) {
  if (cuda_device_available()) {
    int count = 0;
    ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
    EXPECT_EQ(pick_local_device(count + 1), (count + 1) % count);
    EXPECT_EQ(pick_local_device(0), 0);
    return;
  }
  try {
    pick_local_device(0);
    FAIL() << "pick_local_device succeeded without a CUDA device";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("no CUDA device"), std::string::npos) << msg;
    EXPECT_NE(msg.find(process_host()), std::string::npos) << msg;
    EXPECT_EQ(e.exit_code(), kExitUserError);
  }
}

class NcclCommTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LLAMAFT_SKIP_WITHOUT_GPU();
    device_ = pick_local_device(MpiEnvironment::world_.local_rank);
    backend_ = std::make_unique<CudaBackend>(device_, cuda_test::kTestPoolBytes);
    comm_ = make_nccl_world_comm(device_, kTimeoutS, backend_->stream());
    rank_ = comm_->rank();
    size_ = comm_->size();
  }
  void TearDown() override {
    comm_.reset();
    if (backend_) {
      for (void* p : owned_) backend_->free_bytes(p);
      backend_.reset();
    }
  }

  template <typename T>
  T* alloc(size_t n) {
    void* p = backend_->alloc_bytes(n * sizeof(T));
    owned_.push_back(p);
    return static_cast<T*>(p);
  }
  template <typename T>
  T* put(const std::vector<T>& host) {
    T* p = alloc<T>(host.size());
    backend_->to_device(p, host.data(), host.size() * sizeof(T));
    return p;
  }
  template <typename T>
  std::vector<T> get(const T* p, size_t n) {
    std::vector<T> host(n);
    backend_->to_host(host.data(), p, n * sizeof(T));
    return host;
  }
  int64_t rank_sum() const { return int64_t(size_) * (size_ - 1) / 2; }  // 0 + 1 + ... + (size - 1)

  int device_ = 0, rank_ = 0, size_ = 1;
  std::unique_ptr<CudaBackend> backend_;
  std::unique_ptr<Communicator> comm_;
  std::vector<void*> owned_;
};

// Inputs written by compute-stream kernels right before the gather, and the
// output scaled right after wait(), with no host synchronisation in between:
// a missing stream dependency reads stale inputs or scales before the data.
TEST_F(NcclCommTest, AllGatherConcatenatesEveryRankInStreamOrder) {
  const size_t n = (size_t(1) << 21) + 3;
  std::vector<float> mine(n);
  for (size_t i = 0; i < n; ++i) mine[i] = float(rank_ * 1000 + int(i % 1024));
  float* in = put(mine);
  float* out = alloc<float>(n * size_);
  backend_->scale(in, 3.f, n);
  auto req = comm_->all_gather(in, out, n);
  req->wait();
  backend_->scale(out, 2.f, n * size_);
  const auto got = get(out, n * size_);
  size_t bad = 0;
  double abs_sum = 0;
  for (int q = 0; q < size_; ++q)
    for (size_t i = 0; i < n; ++i) {
      const float want = 6.f * float(q * 1000 + int(i % 1024));
      abs_sum += std::abs(got[q * n + i]);
      if (got[q * n + i] != want && ++bad <= 5)
        ADD_FAILURE() << "out[" << q << "*n + " << i << "] = " << got[q * n + i] << ", want " << want;
    }
  EXPECT_EQ(bad, 0u);
  EXPECT_GT(abs_sum, 0.0) << "output is all zeros";
  EXPECT_EQ(comm_->stats().all_gather_bytes, n * sizeof(float));
  EXPECT_EQ(comm_->stats().calls, 1u);
}

TEST_F(NcclCommTest, ReduceScatterSumsEachRanksBlock) {
  const size_t n = 4099;
  std::vector<float> mine(n * size_);
  for (size_t j = 0; j < mine.size(); ++j) mine[j] = 0.5f * float(rank_ + 1) * float(j % 97);
  float* in = put(mine);
  float* out = alloc<float>(n);
  backend_->fill(out, -1.f, n);
  auto req = comm_->reduce_scatter_sum(in, out, n);
  req->wait();
  const auto got = get(out, n);
  const float ranks = float(rank_sum() + size_);  // sum of (q + 1)
  for (size_t i = 0; i < n; ++i) {
    const float want = 0.5f * ranks * float((rank_ * n + i) % 97);
    ASSERT_EQ(got[i], want) << "out[" << i << "]";
  }
  EXPECT_EQ(comm_->stats().reduce_scatter_bytes, n * size_ * sizeof(float));
  EXPECT_EQ(comm_->stats().calls, 1u);
}

TEST_F(NcclCommTest, AllReduceSumOnDeviceAndHostBuffers) {
  const size_t n = 3001;
  std::vector<float> mine(n);
  for (size_t i = 0; i < n; ++i) mine[i] = 0.25f * float(rank_ + 1) * float(i);
  float* dev = put(mine);
  backend_->scale(dev, 2.f, n);  // queued on the compute stream: the all-reduce must see it
  comm_->all_reduce_sum(dev, n);
  const auto got = get(dev, n);
  const float ranks = float(rank_sum() + size_);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], 0.5f * ranks * float(i)) << "data[" << i << "]";

  double sums[3] = {rank_ + 0.5, -2.0 * rank_, 1e-3};  // on the stack, as the trainer's loss sums
  comm_->all_reduce_sum(sums, 3);
  EXPECT_DOUBLE_EQ(sums[0], double(rank_sum()) + 0.5 * size_);
  EXPECT_DOUBLE_EQ(sums[1], -2.0 * double(rank_sum()));
  EXPECT_NEAR(sums[2], 1e-3 * size_, 1e-15);

  const auto& s = comm_->stats();
  EXPECT_EQ(s.all_reduce_bytes, n * sizeof(float) + 3 * sizeof(double));
  EXPECT_EQ(s.calls, 2u);
  EXPECT_EQ(s.all_gather_bytes + s.reduce_scatter_bytes, 0u);
  EXPECT_GT(s.wait_seconds, 0.0);
}

TEST_F(NcclCommTest, AllReduceMaxOnDeviceAndHostBuffers) {
  const int64_t big = int64_t(1) << 40;
  const std::vector<int64_t> mine = {7 * rank_ - 3, -rank_, big + rank_, -big};
  int64_t* dev = put(mine);
  comm_->all_reduce_max(dev, mine.size());
  const std::vector<int64_t> want = {7 * (size_ - 1) - 3, 0, big + size_ - 1, -big};
  EXPECT_EQ(get(dev, mine.size()), want);

  int64_t flags[2] = {rank_ == size_ - 1 ? 1 : 0, -rank_};
  comm_->all_reduce_max(flags, 2);
  EXPECT_EQ(flags[0], 1);
  EXPECT_EQ(flags[1], 0);
  EXPECT_EQ(comm_->stats().all_reduce_bytes, (mine.size() + 2) * sizeof(int64_t));
  EXPECT_EQ(comm_->stats().calls, 2u);
}

TEST_F(NcclCommTest, BroadcastFromTheLastRankCountsNoBytes) {
  const int root = size_ - 1;
  const size_t n = 1000;
  std::vector<uint8_t> mine(n);
  for (size_t i = 0; i < n; ++i) mine[i] = uint8_t(rank_ == root ? (i * 7 + 1) % 251 : 0xEE);
  uint8_t* dev = put(mine);
  comm_->broadcast(dev, n, root);
  const auto got = get(dev, n);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], uint8_t((i * 7 + 1) % 251)) << "byte " << i;

  char text[32] = {0};
  if (rank_ == root) std::snprintf(text, sizeof(text), "from rank %d", root);
  comm_->broadcast(text, sizeof(text), root);
  EXPECT_EQ(std::string(text), "from rank " + std::to_string(root));

  comm_->barrier();
  const auto& s = comm_->stats();
  EXPECT_EQ(s.all_gather_bytes + s.reduce_scatter_bytes + s.all_reduce_bytes, 0u);
  EXPECT_EQ(s.calls, 3u);
}

// color = rank % 2, key = -rank: each half in reverse rank order, with its
// own counters; the parent stays usable.
TEST_F(NcclCommTest, SplitGroupsByColorAndOrdersByKey) {
  auto sub = comm_->split(rank_ % 2, -rank_);
  ASSERT_TRUE(sub);
  int members = 0, above = 0;
  int64_t member_sum = 0;
  for (int q = 0; q < size_; ++q)
    if (q % 2 == rank_ % 2) {
      ++members;
      member_sum += q + 1;
      if (q > rank_) ++above;
    }
  EXPECT_EQ(sub->name(), "nccl");
  EXPECT_EQ(sub->size(), members);
  EXPECT_EQ(sub->rank(), above);

  float* dev = put(std::vector<float>{float(rank_ + 1), 1.f});
  sub->all_reduce_sum(dev, 2);
  EXPECT_EQ(get(dev, 2), (std::vector<float>{float(member_sum), float(members)}));
  EXPECT_EQ(sub->stats().all_reduce_bytes, 2 * sizeof(float));
  EXPECT_EQ(comm_->stats().all_reduce_bytes, 0u);

  const size_t n = 257;
  std::vector<float> mine(n, float(rank_));
  float* in = put(mine);
  float* out = alloc<float>(n * sub->size());
  sub->all_gather(in, out, n)->wait();
  const auto got = get(out, n * sub->size());
  for (int j = 0; j < sub->size(); ++j) {
    // sub rank j is the j-th largest world rank of this color
    int world = -1;
    for (int q = size_ - 1, seen = -1; q >= 0 && seen < j; --q)
      if (q % 2 == rank_ % 2 && ++seen == j) world = q;
    EXPECT_EQ(got[j * n], float(world)) << "block " << j;
    EXPECT_EQ(got[j * n + n - 1], float(world)) << "block " << j;
  }

  int64_t flag = rank_;
  comm_->all_reduce_max(&flag, 1);
  EXPECT_EQ(flag, size_ - 1);
}

// The compute stream is held by a host callback for longer than the timeout,
// so the all-reduce queued behind it cannot finish: the communicator must
// give up after timeout_s, name the collective, rank and host, and refuse
// further use. (The callback then releases the stream and the aborted
// collective drains.)
TEST(NcclCommTimeout, BlockedCollectiveAbortsWithAMessage) {
  LLAMAFT_SKIP_WITHOUT_GPU();
  if (mpi_active()) GTEST_SKIP() << "single-process test";
  const int device = pick_local_device(0);
  CudaBackend backend(device, cuda_test::kTestPoolBytes);
  float* buf = static_cast<float*>(backend.alloc_bytes(sizeof(float)));
  {
    auto comm = make_nccl_world_comm(device, /*timeout_s=*/0.5, backend.stream());
    ASSERT_EQ(cudaLaunchHostFunc(
                  backend.stream(), [](void*) { std::this_thread::sleep_for(std::chrono::seconds(2)); }, nullptr),
              cudaSuccess);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      comm->all_reduce_sum(buf, 1);
      FAIL() << "all_reduce_sum returned while the compute stream was blocked";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("NCCL all_reduce_sum timed out after 0.5 s on rank 0 (host " + process_host()),
                std::string::npos)
          << msg;
      EXPECT_EQ(e.exit_code(), kExitCommFailure);
    }
    EXPECT_GE(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 0.5);
    EXPECT_THROW(comm->barrier(), Error);
  }
  backend.synchronize();
  backend.free_bytes(buf);
}

}  // namespace
}  // namespace llamaft
