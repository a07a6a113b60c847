// CUDA linear: cuBLAS SGEMM (f32 weights) plus a bias kernel. The bf16/fp8 fast paths come with
// the GPU issue; other weight dtypes are refused with a clear message until then.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "ops/cuda/cuda_common.h"
#include "ops/linear.h"

namespace ib::ops::cuda {

namespace {
__global__ void add_bias_rows(float* y, const float* b, int64_t M, int64_t N) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < M * N) y[i] += b[i % N];
}
}  // namespace

void linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y) {
  IB_CHECK(w.dtype() == DType::F32, "linear on CUDA: weight dtype {} is not supported yet", dtype_name(w.dtype()));
  const int64_t K = w.size(1), N = w.size(0), M = x.numel() / (K > 0 ? K : 1);
  const float one = 1.0f, zero = 0.0f;
  // Row-major y[M,N] = x[M,K] w[N,K]^T  <=>  column-major y^T[N,M] = w[N,K] (as K x N)^T x^T.
  check_cublas(cublasSgemm(cublas_handle(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                           static_cast<int>(K), &one, w.data<float>(), static_cast<int>(K), x.data<float>(),
                           static_cast<int>(K), &zero, y.data<float>(), static_cast<int>(N)),
               "cublasSgemm");
  if (b.defined()) {
    IB_CHECK(b.dtype() == DType::F32, "linear on CUDA: bias must be f32");
    const int64_t n = M * N;
    add_bias_rows<<<static_cast<unsigned>((n + 255) / 256), 256>>>(y.data<float>(), b.data<float>(), M, N);
    check_cuda(cudaGetLastError(), "add_bias_rows");
  }
}

}  // namespace ib::ops::cuda
