// CUDA f32 <-> bf16 conversion: grid-stride elementwise kernels, f32 -> bf16 rounding to nearest
// even. The one copy of it: linear, conv3d and pixel_attention round their bf16 GEMM operands here.
#include <cuda_bf16.h>

#include "ops/convert.h"
#include "ops/cuda/cuda_common.h"

namespace ib::ops::cuda {

namespace {

__global__ void f32_to_bf16_kernel(const float* __restrict__ x, __nv_bfloat16* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}
__global__ void bf16_to_f32_kernel(const __nv_bfloat16* __restrict__ x, float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = __bfloat162float(x[i]);
}

}  // namespace

void convert_f32_to_bf16(const float* x, void* y, int64_t n) {
  if (n <= 0) return;
  f32_to_bf16_kernel<<<blocks_for(n), 256>>>(x, static_cast<__nv_bfloat16*>(y), n);
  check_launch("f32_to_bf16");
}

void convert_dtype(const Tensor& x, const Tensor& y) {
  IB_CHECK(x.device() == Device::CUDA && y.device() == Device::CUDA && x.numel() == y.numel(),
           "convert_dtype on CUDA: {} -> {}", x.str(), y.str());
  const int64_t n = x.numel();
  if (n == 0) return;
  if (x.dtype() == DType::F32 && y.dtype() == DType::BF16) {
    convert_f32_to_bf16(x.data<float>(), y.raw(), n);
  } else if (x.dtype() == DType::BF16 && y.dtype() == DType::F32) {
    bf16_to_f32_kernel<<<blocks_for(n), 256>>>(static_cast<const __nv_bfloat16*>(x.raw()), y.data<float>(), n);
    check_launch("bf16_to_f32");
  } else {
    fail("convert_dtype on CUDA: only f32 <-> bf16, got {} -> {}", x.str(), y.str());
  }
}

}  // namespace ib::ops::cuda
