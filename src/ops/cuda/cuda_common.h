// Shared CUDA helpers for the op backends: error checks and the per-thread cuBLAS handle.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/check.h"

namespace ib::ops::cuda {

inline void check_cuda(cudaError_t e, const char* what) {
  IB_CHECK(e == cudaSuccess, "CUDA error in {}: {}", what, cudaGetErrorString(e));
}
inline void check_cublas(cublasStatus_t s, const char* what) {
  IB_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuBLAS error in {}: status {}", what, static_cast<int>(s));
}
cublasHandle_t cublas_handle();

}  // namespace ib::ops::cuda
