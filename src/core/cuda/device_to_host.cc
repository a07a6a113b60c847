// DeviceToHostQueue with the CUDA runtime (see core/device_to_host.h).
#include "core/device_to_host.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <mutex>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/cuda_memory.h"

namespace ib::cuda {

namespace {

// The staging buffers of finished queues, kept for the next one (at most kKept, the largest):
// page-locking two buffers of a chunk's size (19 MB at 480p, 44 MB at 720p) and freeing them again
// cost every decode its time in cudaMallocHost and cudaFreeHost (measured with bench_vae_gpu's
// decode480host / decode720host: 0.841 -> 0.831 s and 1.957 -> 1.915 s; the decode into device
// memory alone 0.832 / 1.894 s).
constexpr size_t kKept = 2;
struct KeptStaging {
  std::mutex mu;
  std::vector<std::pair<size_t, void*>> free;  // (bytes, buffer)
};
KeptStaging& kept() {  // never destroyed: a queue may finish during static destruction
  static auto* k = new KeptStaging;
  return *k;
}

// A kept buffer of at least `bytes` (the smallest such), else a new one.
void* take_staging(size_t bytes) {
  {
    KeptStaging& k = kept();
    std::lock_guard lock(k.mu);
    auto best = k.free.end();
    for (auto it = k.free.begin(); it != k.free.end(); ++it)
      if (it->first >= bytes && (best == k.free.end() || it->first < best->first)) best = it;
    if (best != k.free.end()) {
      void* p = best->second;
      k.free.erase(best);
      return p;
    }
  }
  return malloc_pinned(bytes);
}

// Keeps p (of `bytes`) for a later queue; of more than kKept buffers the smallest are freed. Kept
// buffers live until the process ends (never freed at exit: the CUDA runtime may be gone by then).
void give_staging(void* p, size_t bytes) {
  if (p == nullptr) return;
  KeptStaging& k = kept();
  std::lock_guard lock(k.mu);
  k.free.emplace_back(bytes, p);
  std::sort(k.free.begin(), k.free.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  while (k.free.size() > kKept) {
    free_pinned(k.free.back().second);
    k.free.pop_back();
  }
}

}  // namespace

DeviceToHostQueue::DeviceToHostQueue(size_t max_bytes) : max_bytes_(max_bytes) {
  for (Slot& s : slots_) {
    s.staging = take_staging(max_bytes);
    cudaEvent_t e = nullptr;
    const cudaError_t r = cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
    IB_CHECK(r == cudaSuccess, "device-to-host queue: cudaEventCreate failed: {}", cudaGetErrorString(r));
    s.done = e;
  }
  worker_ = std::thread([this] { work(); });
}

DeviceToHostQueue::~DeviceToHostQueue() {
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return jobs_.empty() && !slots_[0].busy && !slots_[1].busy; });
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
  for (Slot& s : slots_) {
    if (s.done != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(s.done));
    give_staging(s.staging, max_bytes_);
  }
}

void DeviceToHostQueue::rethrow_locked() {
  if (error_) {
    const std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void DeviceToHostQueue::push(const void* src, size_t bytes, Deliver deliver) {
  IB_CHECK(bytes <= max_bytes_, "device-to-host queue: {} bytes pushed, its buffers hold {}", bytes, max_bytes_);
  std::unique_lock lock(mu_);
  Slot& s = slots_[next_];
  cv_.wait(lock, [&] { return !s.busy || error_; });
  rethrow_locked();
  cudaError_t r = cudaMemcpyAsync(s.staging, src, bytes, cudaMemcpyDeviceToHost, nullptr);
  if (r == cudaSuccess) r = cudaEventRecord(static_cast<cudaEvent_t>(s.done), nullptr);
  IB_CHECK(r == cudaSuccess, "device-to-host queue: queuing a copy of {} bytes failed: {}", bytes,
           cudaGetErrorString(r));
  s.busy = true;
  jobs_.push_back({next_, std::move(deliver)});
  next_ = 1 - next_;
  lock.unlock();
  cv_.notify_all();
}

void DeviceToHostQueue::finish() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return jobs_.empty() && !slots_[0].busy && !slots_[1].busy; });
  rethrow_locked();
}

void DeviceToHostQueue::work() {
  for (;;) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stop_ with nothing left
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    Slot& s = slots_[job.slot];
    lock.unlock();
    try {
      const cudaError_t r = cudaEventSynchronize(static_cast<cudaEvent_t>(s.done));
      IB_CHECK(r == cudaSuccess, "device-to-host copy failed: {}", cudaGetErrorString(r));
      job.deliver(s.staging);
    } catch (...) {
      lock.lock();
      if (!error_) error_ = std::current_exception();
      lock.unlock();
    }
    lock.lock();
    s.busy = false;
    lock.unlock();
    cv_.notify_all();
  }
}

}  // namespace ib::cuda
