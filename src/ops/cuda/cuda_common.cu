#include "ops/cuda/cuda_common.h"

namespace ib::ops::cuda {

cublasHandle_t cublas_handle() {
  thread_local cublasHandle_t h = [] {
    cublasHandle_t handle = nullptr;
    check_cublas(cublasCreate(&handle), "cublasCreate");
    return handle;
  }();
  return h;
}

}  // namespace ib::ops::cuda
