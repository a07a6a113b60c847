// A persistent worker pool and parallel_for over an index range. CPU kernels split their outer
// loop with it; matrix products use OpenBLAS's own threads, sized to match.
#pragma once

#include <cstdint>
#include <functional>

namespace ib {

// Number of threads CPU kernels use (default: hardware concurrency).
int num_threads();
// Sets it (n <= 0 restores the default); also sizes the BLAS thread pool when one is linked.
void set_num_threads(int n);

// Calls fn(begin, end) on disjoint chunks covering [0, n), in parallel. `grain` is the smallest
// chunk worth a thread. Exceptions thrown by fn are rethrown (the first one) in the caller.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace ib
