// The main of mpi_unit_tests: every rank runs every test, in the same order
// (tests make collective calls, so none may be skipped on one rank alone),
// and the ranks agree on the verdict with MPI_Allreduce(MPI_LOR), as LLNL
// Aluminum's tests do: the exit status is 1 on every rank when any rank
// failed. Rank 0 prints GoogleTest's usual report; the other ranks print only
// their failures, prefixed with their rank.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "comm/communicator.hpp"

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                 r.line_number(), r.summary());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed())
      std::fprintf(stderr, "[rank %d] FAILED %s.%s\n", rank_, info.test_suite_name(), info.name());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const llamaft::MpiWorld world = llamaft::init_mpi(&argc, &argv);
  if (world.rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(world.rank));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
  if (world.rank == 0 && failed) std::fprintf(stderr, "mpi_unit_tests: a test failed on at least one rank\n");
  llamaft::finalize_mpi();
  return failed;
}
