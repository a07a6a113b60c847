// Elementwise arithmetic on f32 tensors. `b` either has a's shape or equals a's trailing
// dimensions (broadcast over the leading ones, e.g. a [L, C] and b [C]).
#pragma once

#include "core/tensor.h"

namespace ib::ops {

enum class Binary { Add, Sub, Mul };

Tensor binary(const Tensor& a, const Tensor& b, Binary op);
inline Tensor add(const Tensor& a, const Tensor& b) { return binary(a, b, Binary::Add); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return binary(a, b, Binary::Sub); }
inline Tensor mul(const Tensor& a, const Tensor& b) { return binary(a, b, Binary::Mul); }
// In place: a = a (op) b.
void binary_(const Tensor& a, const Tensor& b, Binary op);
inline void add_(const Tensor& a, const Tensor& b) { binary_(a, b, Binary::Add); }

// y = a * x + b (scalars), a new tensor.
Tensor affine(const Tensor& x, float a, float b);

namespace cpu {
void binary(const Tensor& a, const Tensor& b, Binary op, const Tensor& y);
void affine(const Tensor& x, float a, float b, const Tensor& y);
}  // namespace cpu
namespace cuda {
void binary(const Tensor& a, const Tensor& b, Binary op, const Tensor& y);
void affine(const Tensor& x, float a, float b, const Tensor& y);
}  // namespace cuda

}  // namespace ib::ops
