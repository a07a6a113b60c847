// Device memory primitives. Implemented with the CUDA runtime in CUDA builds
// (src/core/cuda/cuda_memory.cc) and as clear errors otherwise (cuda_memory_stub.cc).
#pragma once

#include <cstddef>

namespace ib::cuda {

int device_count();  // 0 without CUDA or without a device
void* malloc_device(size_t bytes);
void free_device(void* p);
void memset_device(void* p, int value, size_t bytes);
void memcpy_any(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes);

}  // namespace ib::cuda
