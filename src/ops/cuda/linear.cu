// CUDA linear. f32 weights: cuBLAS SGEMM (exact f32). bf16 weights: the input is rounded to bf16
// and the product runs on the tensor cores with f32 accumulation and an f32 result, the precision
// of upstream's bf16 autocast. The bias is added by the broadcast elementwise kernel. Other weight
// dtypes are refused.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "ops/convert.h"
#include "ops/cuda/cuda_common.h"
#include "ops/elementwise.h"
#include "ops/linear.h"

namespace ib::ops::cuda {

void linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y) {
  IB_CHECK(w.dtype() == DType::F32 || w.dtype() == DType::BF16, "linear on CUDA: weight dtype {} is not supported",
           dtype_name(w.dtype()));
  const int64_t K = w.size(1), N = w.size(0), M = x.numel() / (K > 0 ? K : 1);
  IB_CHECK(M <= 0x7fffffff && N <= 0x7fffffff && K <= 0x7fffffff, "linear on CUDA: {} x {} x {} is too large", M, N, K);
  if (M == 0 || N == 0) return;
  const float one = 1.0f, zero = 0.0f;
  // Row-major y[M,N] = x[M,K] w[N,K]^T  <=>  column-major y^T[N,M] = w[N,K] (as K x N)^T x^T.
  if (w.dtype() == DType::F32) {
    check_cublas(cublasSgemm(cublas_handle(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                             static_cast<int>(K), &one, w.data<float>(), static_cast<int>(K), dev_f32(x, "linear"),
                             static_cast<int>(K), &zero, dev_f32(y, "linear"), static_cast<int>(N)),
                 "cublasSgemm");
  } else {
    const Tensor xb = Tensor::empty({M, K}, DType::BF16, Device::CUDA);
    void* xbp = xb.raw();
    convert_f32_to_bf16(dev_f32(x, "linear"), xbp, M * K);
    check_cublas(cublasGemmEx(cublas_handle(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                              static_cast<int>(K), &one, w.raw(), CUDA_R_16BF, static_cast<int>(K), xbp, CUDA_R_16BF,
                              static_cast<int>(K), &zero, dev_f32(y, "linear"), CUDA_R_32F, static_cast<int>(N),
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx (bf16)");
  }
  if (b.defined()) binary(y, b, Binary::Add, y);  // the bias, broadcast over the rows
}

}  // namespace ib::ops::cuda
