// convert: activations between f32 and bf16, rounding to nearest even (as torch's .to(bfloat16)).
// Tensors convert through to_dtype on any device; the CUDA backends that hand bf16 operands to a
// GEMM round their f32 input through cuda::convert_f32_to_bf16 on raw device pointers.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace ib::ops {

// x as f32 or bf16, the same tensor when it already is: the VAE decoder's bf16 activations meet
// the f32-only ops through it. Any device.
Tensor to_dtype(const Tensor& x, DType dtype);

namespace cuda {
void convert_dtype(const Tensor& x, const Tensor& y);  // f32 <-> bf16, same element count
// y[i] = bf16(x[i]) for i < n, device pointers (y holds n bf16), on the default stream like every
// op here.
void convert_f32_to_bf16(const float* x, void* y, int64_t n);
}  // namespace cuda

}  // namespace ib::ops
