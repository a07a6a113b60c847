// CPU-only builds: every device-memory request fails with a clear message.
#ifndef INBETWEEN_HAVE_CUDA
#include "core/check.h"
#include "core/cuda_memory.h"

namespace ib::cuda {

int device_count() { return 0; }
void* malloc_device(size_t) { fail("this build of inbetween has no CUDA support (rebuild with -DINBETWEEN_CUDA=ON)"); }
void free_device(void*) {}
void memset_device(void*, int, size_t) { fail("this build of inbetween has no CUDA support"); }
void memcpy_any(void*, bool, const void*, bool, size_t) { fail("this build of inbetween has no CUDA support"); }
MemoryStats memory_stats() { return {}; }
void reset_peak_memory() {}
void empty_cache() {}
void synchronize(const char*) {}
void set_memory_budget(size_t) {}
size_t available_bytes() { return 0; }
void* malloc_pinned(size_t) { fail("this build of inbetween has no CUDA support"); }
void free_pinned(void*) {}

}  // namespace ib::cuda
#endif

#ifndef INBETWEEN_HAVE_CUDA
#include "core/device_to_host.h"

namespace ib::cuda {

DeviceToHostQueue::DeviceToHostQueue(size_t max_bytes) : max_bytes_(max_bytes) {
  fail("this build of inbetween has no CUDA support: no device-to-host copies");
}
DeviceToHostQueue::~DeviceToHostQueue() = default;
void DeviceToHostQueue::push(const void*, size_t, Deliver) { fail("this build of inbetween has no CUDA support"); }
void DeviceToHostQueue::finish() {}
void DeviceToHostQueue::work() {}
void DeviceToHostQueue::rethrow_locked() {}

}  // namespace ib::cuda
#endif
