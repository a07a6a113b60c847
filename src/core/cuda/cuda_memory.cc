// CUDA runtime implementation of the device memory primitives (CUDA builds only).
#include "core/cuda_memory.h"

#include <cuda_runtime.h>

#include "core/check.h"

namespace ib::cuda {

namespace {
void check(cudaError_t e, const char* what) {
  IB_CHECK(e == cudaSuccess, "CUDA {} failed: {}", what, cudaGetErrorString(e));
}
}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

void* malloc_device(size_t bytes) {
  IB_CHECK(device_count() > 0, "no CUDA device is available (use --device cpu)");
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes == 0 ? 1 : bytes);
  IB_CHECK(e == cudaSuccess, "out of GPU memory allocating {:.2f} MiB: {}",
           static_cast<double>(bytes) / (1024.0 * 1024.0), cudaGetErrorString(e));
  return p;
}

void free_device(void* p) { cudaFree(p); }

void memset_device(void* p, int value, size_t bytes) { check(cudaMemset(p, value, bytes), "memset"); }

void memcpy_any(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes) {
  cudaMemcpyKind kind = cudaMemcpyHostToHost;
  if (dst_on_device && src_on_device) kind = cudaMemcpyDeviceToDevice;
  else if (dst_on_device) kind = cudaMemcpyHostToDevice;
  else if (src_on_device) kind = cudaMemcpyDeviceToHost;
  check(cudaMemcpy(dst, src, bytes, kind), "memcpy");
}

}  // namespace ib::cuda
