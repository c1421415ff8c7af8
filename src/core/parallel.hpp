// parallel_for_each: body(local, i) for i in [0, n) on every OpenMP thread
// (dynamic schedule), each thread with its own default-constructed `Local`
// scratch. An exception never crosses the parallel region: the first one is
// kept, the remaining iterations are skipped, and it is rethrown on the
// calling thread once every thread has stopped.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>

namespace llamaft {

template <typename Local, typename Body>
void parallel_for_each(int64_t n, bool parallel, Body&& body) {
  std::exception_ptr failure;
  std::atomic<bool> failed{false};
#pragma omp parallel if (parallel)
  {
    Local local{};
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; ++i) {
      if (failed.load(std::memory_order_relaxed)) continue;
      try {
        body(local, i);
      } catch (...) {
#pragma omp critical(llamaft_parallel_for_each)
        if (!failure) failure = std::current_exception();
        failed = true;
      }
    }
  }
  if (failure) std::rethrow_exception(failure);
}

}  // namespace llamaft
