// Weights that do not fit the GPU's memory budget, streamed (the VRAM budget): blobs of one layout
// (one per streamed DiT block) live in page-locked host memory and pass through two device slots.
// While the default stream computes with the blob in one slot, a second stream copies the next
// blob into the other; events order the two, so nothing waits on the host.
//
//   BlobStream s(bytes, n);         // n blobs in pinned memory, fill them through host(k)
//   s.begin(order);                 // a pass over the blobs in this order: the first two copies start
//   int slot = s.acquire(i);        // the default stream waits for the i-th blob's copy
//   ... queue the kernels that read slot_data(slot) ...
//   s.release(i);                   // once they finish, the slot takes blob i+2
//
// Device work elsewhere runs on the legacy default stream; the copy stream is non-blocking, so it
// overlaps with it and is ordered only by the events here.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <vector>

#include "core/tensor.h"

namespace ib::gpu {

class BlobStream {
 public:
  BlobStream(size_t blob_bytes, size_t blobs);
  ~BlobStream();
  BlobStream(const BlobStream&) = delete;
  BlobStream& operator=(const BlobStream&) = delete;

  size_t blob_bytes() const { return blob_bytes_; }
  size_t blobs() const { return blobs_; }
  char* host(size_t k) const { return host_ + k * blob_bytes_; }
  // The device bytes of slot 0 or 1 (U8 [blob_bytes]); views into it alias whatever blob it holds.
  const Tensor& slot(int s) const { return slots_[static_cast<size_t>(s)]; }

  void begin(const std::vector<size_t>& order);
  int acquire(size_t i);
  void release(size_t i);
  // Device milliseconds the copy stream spent copying during the last finished pass (events around
  // each copy; for the benchmark's hidden / not hidden split).
  double copy_ms() const;

 private:
  void copy(size_t i);
  size_t blob_bytes_, blobs_;
  char* host_ = nullptr;
  std::array<Tensor, 2> slots_;
  cudaStream_t copy_stream_ = nullptr;
  std::array<cudaEvent_t, 2> copied_{}, freed_{};
  std::vector<size_t> order_;
  std::vector<std::array<cudaEvent_t, 2>> timing_;  // start and end of each copy of the pass
};

}  // namespace ib::gpu
