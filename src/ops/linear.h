// linear: y[..., out] = x[..., in] · w[out, in]ᵀ + b[out], PyTorch's nn.Linear.
#pragma once

#include "core/tensor.h"

namespace ib::ops {

// x: f32 [..., in]; w: f32, bf16 or f16 [out, in]; b: optional [out]. Returns f32 [..., out].
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

namespace cpu {
void linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y);
}
namespace cuda {
void linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y);
}

}  // namespace ib::ops
