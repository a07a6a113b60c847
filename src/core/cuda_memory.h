// Device memory primitives. Implemented with the CUDA runtime in CUDA builds
// (src/core/cuda/cuda_memory.cc) and as clear errors otherwise (cuda_memory_stub.cc).
//
// Device tensors are allocated through a caching allocator: a freed block goes back to a pool
// and serves a later request of a similar size without cudaMalloc/cudaFree (cudaFree synchronises
// the whole device). All device work runs on the legacy default stream, so a block freed by the
// host can be handed out again at once: the next use is ordered after every earlier launch.
#pragma once

#include <cstddef>

namespace ib::cuda {

int device_count();  // 0 without CUDA or without a device
void* malloc_device(size_t bytes);
void free_device(void* p);
void memset_device(void* p, int value, size_t bytes);
void memcpy_any(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes);

struct MemoryStats {
  size_t in_use = 0;         // bytes held by live tensors
  size_t reserved = 0;       // in_use + cached free blocks (what cudaMalloc gave us)
  size_t peak_in_use = 0;    // since the last reset_peak_memory()
  size_t peak_reserved = 0;  // since the last reset_peak_memory()
  size_t device_free = 0;    // cudaMemGetInfo, at the time of the call
  size_t device_total = 0;
  long long cuda_mallocs = 0;  // cudaMalloc calls so far (a warm loop should add none)
  size_t budget = 0;           // set_memory_budget(), 0: none
};
MemoryStats memory_stats();
void reset_peak_memory();
// Returns the cached free blocks to the driver.
void empty_cache();

// The most device memory the engine may reserve (live tensors plus its cache); 0: the whole GPU.
// A request that would pass it first returns the cache to the driver, then fails with a message
// naming the budget (--vram-budget), what is in use and what was asked for.
void set_memory_budget(size_t bytes);
// Bytes the engine could still allocate now: the budget (or the device) minus what live tensors
// hold, the cache counted as free.
size_t available_bytes();

// Page-locked host memory (weights streamed to the GPU are copied from it without staging).
void* malloc_pinned(size_t bytes);
void free_pinned(void* p);
// Waits for all queued device work and reports a pending asynchronous error, naming `what`.
void synchronize(const char* what);

}  // namespace ib::cuda
