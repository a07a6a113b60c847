// DeviceToHostQueue with the CUDA runtime (see core/device_to_host.h).
#include "core/device_to_host.h"

#include <cuda_runtime.h>

#include "core/check.h"
#include "core/cuda_memory.h"

namespace ib::cuda {

DeviceToHostQueue::DeviceToHostQueue(size_t max_bytes) : max_bytes_(max_bytes) {
  for (Slot& s : slots_) {
    s.staging = malloc_pinned(max_bytes);
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
    free_pinned(s.staging);
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
