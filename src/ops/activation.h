// Elementwise activations on f32 tensors; each returns a new tensor of the same shape.
#pragma once

#include "core/tensor.h"

namespace ib::ops {

enum class Activation { Gelu, GeluTanh, Silu };

// GELU (exact, erf), GELU-tanh approximation, SiLU = x * sigmoid(x).
Tensor activate(const Tensor& x, Activation a);
inline Tensor gelu(const Tensor& x) { return activate(x, Activation::Gelu); }
inline Tensor gelu_tanh(const Tensor& x) { return activate(x, Activation::GeluTanh); }
inline Tensor silu(const Tensor& x) { return activate(x, Activation::Silu); }

namespace cpu {
void activate(const Tensor& x, Activation a, const Tensor& y);
}
namespace cuda {
void activate(const Tensor& x, Activation a, const Tensor& y);
}

}  // namespace ib::ops
