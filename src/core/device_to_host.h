// Copies of device buffers to host memory that run behind the device's work instead of after it.
//
// A decoded video is ~0.4 GB (480p) to ~0.9 GB (720p) of f32. Copied to fresh, pageable host memory
// in one piece after the decode, it took 0.27 s of a 1.46 s 480p decode on the H200 (the driver's
// staging and the first touch of every page). This queue takes the video a chunk at a time instead:
// each push queues the chunk's copy on the (legacy default) stream the engine's kernels run on,
// into one of two page-locked staging buffers, so the copy reads its source before any later kernel
// can reuse that memory; a worker thread waits for the copy and hands the staging buffer to the
// caller's `deliver` (which moves the bytes to their place in host memory) while the device goes
// on with the next chunk. CUDA builds only: without CUDA, constructing one fails with a message.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace ib::cuda {

class DeviceToHostQueue {
 public:
  // Receives the staging buffer holding a push's bytes, on the worker thread.
  using Deliver = std::function<void(const void* host)>;

  explicit DeviceToHostQueue(size_t max_bytes);  // the largest push
  ~DeviceToHostQueue();                          // waits for queued copies; errors are dropped
  DeviceToHostQueue(const DeviceToHostQueue&) = delete;
  DeviceToHostQueue& operator=(const DeviceToHostQueue&) = delete;

  // Queues a copy of `bytes` (<= max_bytes) from device memory at `src` (any device work before
  // this call that writes it is finished first: stream order), then deliver(staging) on the
  // worker. Blocks while both staging buffers are in use; rethrows an earlier delivery's error.
  void push(const void* src, size_t bytes, Deliver deliver);
  // Waits until every queued copy has been delivered; rethrows the first error (a failed copy or
  // an exception from a deliver).
  void finish();

 private:
  struct Slot {
    void* staging = nullptr;
    void* done = nullptr;  // cudaEvent_t
    bool busy = false;
  };
  struct Job {
    int slot;
    Deliver deliver;
  };
  void work();
  void rethrow_locked();

  size_t max_bytes_;
  Slot slots_[2];
  int next_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace ib::cuda
