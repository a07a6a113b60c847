// Shared CUDA helpers for the op backends: error checks and the per-thread cuBLAS handle.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/check.h"
#include "core/tensor.h"

namespace ib::ops::cuda {

inline void check_cuda(cudaError_t e, const char* what) {
  IB_CHECK(e == cudaSuccess, "CUDA error in {}: {}", what, cudaGetErrorString(e));
}
inline void check_cublas(cublasStatus_t s, const char* what) {
  IB_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuBLAS error in {}: status {}", what, static_cast<int>(s));
}
cublasHandle_t cublas_handle();

// Blocks of `threads` for a grid-stride loop over n elements (capped; the loop covers the rest).
inline unsigned blocks_for(int64_t n, int threads = 256) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

// Checks the launch just made (configuration errors show up here, faults at the next sync).
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

// The data of an f32 tensor on the device (the kernels here take no other), or an error naming the op.
inline float* dev_f32(const Tensor& t, const char* op) {
  IB_CHECK(t.device() == Device::CUDA && t.dtype() == DType::F32, "{} on CUDA: expected an f32 device tensor, got {}",
           op, t.str());
  return t.data<float>();
}

}  // namespace ib::ops::cuda
