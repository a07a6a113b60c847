// BlobStream (see block_stream.h).
#include "gpu/block_stream.h"

#include <algorithm>

#include "core/check.h"
#include "core/cuda_memory.h"

namespace ib::gpu {

namespace {
void check(cudaError_t e, const char* what) {
  IB_CHECK(e == cudaSuccess, "CUDA {} failed (streamed weights): {}", what, cudaGetErrorString(e));
}
}  // namespace

BlobStream::BlobStream(size_t blob_bytes, size_t blobs) : blob_bytes_(blob_bytes), blobs_(blobs) {
  IB_CHECK(blob_bytes > 0 && blobs > 0, "BlobStream: nothing to stream");
  host_ = static_cast<char*>(cuda::malloc_pinned(blob_bytes * blobs));
  for (Tensor& s : slots_) s = Tensor::empty({static_cast<int64_t>(blob_bytes)}, DType::U8, Device::CUDA);
  check(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  for (size_t s = 0; s < 2; ++s) {
    check(cudaEventCreateWithFlags(&copied_[s], cudaEventDisableTiming), "cudaEventCreate");
    check(cudaEventCreateWithFlags(&freed_[s], cudaEventDisableTiming), "cudaEventCreate");
  }
}

BlobStream::~BlobStream() {
  if (copy_stream_ != nullptr) cudaStreamSynchronize(copy_stream_);
  for (auto& t : timing_)
    for (cudaEvent_t e : t) cudaEventDestroy(e);
  for (size_t s = 0; s < 2; ++s) {
    cudaEventDestroy(copied_[s]);
    cudaEventDestroy(freed_[s]);
  }
  if (copy_stream_ != nullptr) cudaStreamDestroy(copy_stream_);
  cuda::free_pinned(host_);
}

void BlobStream::copy(size_t i) {
  const int s = static_cast<int>(i % 2);
  // The slot is free once the default stream's work on its previous blob is done.
  check(cudaStreamWaitEvent(copy_stream_, freed_[static_cast<size_t>(s)], 0), "cudaStreamWaitEvent");
  check(cudaEventRecord(timing_[i][0], copy_stream_), "cudaEventRecord");
  check(cudaMemcpyAsync(slots_[static_cast<size_t>(s)].raw(), host(order_[i]), blob_bytes_, cudaMemcpyHostToDevice,
                        copy_stream_),
        "cudaMemcpyAsync");
  check(cudaEventRecord(timing_[i][1], copy_stream_), "cudaEventRecord");
  check(cudaEventRecord(copied_[static_cast<size_t>(s)], copy_stream_), "cudaEventRecord");
}

void BlobStream::begin(const std::vector<size_t>& order) {
  for (size_t k : order) IB_CHECK(k < blobs_, "BlobStream: blob {} of {}", k, blobs_);
  // The previous pass's copies are finished before its timing events are reused.
  check(cudaStreamSynchronize(copy_stream_), "cudaStreamSynchronize");
  order_ = order;
  while (timing_.size() < order_.size()) {
    std::array<cudaEvent_t, 2> t{};
    for (cudaEvent_t& e : t) check(cudaEventCreate(&e), "cudaEventCreate");
    timing_.push_back(t);
  }
  // Both slots are free once the default stream's work queued so far (an earlier pass) is done.
  for (size_t s = 0; s < 2; ++s) check(cudaEventRecord(freed_[s], nullptr), "cudaEventRecord");
  for (size_t i = 0; i < std::min<size_t>(2, order_.size()); ++i) copy(i);
}

int BlobStream::acquire(size_t i) {
  IB_CHECK(i < order_.size(), "BlobStream: acquire {} of a pass of {}", i, order_.size());
  const int s = static_cast<int>(i % 2);
  check(cudaStreamWaitEvent(nullptr, copied_[static_cast<size_t>(s)], 0), "cudaStreamWaitEvent");
  return s;
}

void BlobStream::release(size_t i) {
  const size_t s = i % 2;
  check(cudaEventRecord(freed_[s], nullptr), "cudaEventRecord");
  if (i + 2 < order_.size()) copy(i + 2);
}

double BlobStream::copy_ms() const {
  cudaStreamSynchronize(copy_stream_);
  double total = 0;
  for (size_t i = 0; i < order_.size(); ++i) {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, timing_[i][0], timing_[i][1]) == cudaSuccess) total += ms;
  }
  (void)cudaGetLastError();
  return total;
}

}  // namespace ib::gpu
