#include "core/parallel.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace ib {

namespace {

class Pool {
 public:
  explicit Pool(int n) {
    for (int i = 0; i < n - 1; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs task(i) for i in [0, count) on the pool and the calling thread.
  void run(int64_t count, const std::function<void(int64_t)>& task) {
    std::unique_lock<std::mutex> call(call_mu_);  // one parallel region at a time
    uint64_t gen = 0;
    {
      std::lock_guard<std::mutex> lk(mu_);
      task_ = &task;
      count_ = count;
      next_ = 0;
      pending_ = count;
      error_ = nullptr;
      gen = ++generation_;
    }
    cv_.notify_all();
    work(gen);
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return pending_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      work(seen);
    }
  }
  // Claims and runs task indices of region `gen` until none is left. The claim (index and task)
  // is taken under the lock: claimed outside it, an index could be drawn from one region and run
  // in the next, run twice, and make pending_ skip zero (a caller waiting forever).
  void work(uint64_t gen) {
    for (;;) {
      int64_t i = 0;
      const std::function<void(int64_t)>* task;
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (generation_ != gen || task_ == nullptr || next_ >= count_) return;
        i = next_++;
        task = task_;
      }
      try {
        (*task)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
      }
      std::lock_guard<std::mutex> lk(mu_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mu_, call_mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t)>* task_ = nullptr;
  int64_t count_ = 0;
  int64_t next_ = 0;
  int64_t pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

int default_threads() { return std::max(1, static_cast<int>(std::thread::hardware_concurrency())); }

std::mutex g_pool_mu;
std::unique_ptr<Pool> g_pool;
int g_threads = 0;

Pool& pool() {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  if (!g_pool) g_pool = std::make_unique<Pool>(g_threads > 0 ? g_threads : default_threads());
  return *g_pool;
}

thread_local bool t_inside = false;

}  // namespace

// Provided by the ops library when OpenBLAS is linked (weak so the core links without it).
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

int num_threads() { return g_threads > 0 ? g_threads : default_threads(); }

void set_num_threads(int n) {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  g_threads = n > 0 ? n : 0;
  g_pool.reset();
  if (openblas_set_num_threads) openblas_set_num_threads(g_threads > 0 ? g_threads : default_threads());
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t threads = num_threads();
  int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, threads * 4);
  if (chunks <= 1 || threads == 1 || t_inside) {
    fn(0, n);
    return;
  }
  const int64_t per = (n + chunks - 1) / chunks;
  chunks = (n + per - 1) / per;
  pool().run(chunks, [&](int64_t c) {
    t_inside = true;
    const int64_t b = c * per;
    try {
      fn(b, std::min(n, b + per));
    } catch (...) {
      t_inside = false;
      throw;
    }
    t_inside = false;
  });
}

}  // namespace ib
