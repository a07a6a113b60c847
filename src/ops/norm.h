// Normalisations over the last dimension (PyTorch order): LayerNorm and RMSNorm.
#pragma once

#include "core/tensor.h"

namespace ib::ops {

// (x - mean) / sqrt(biased var + eps), then * weight + bias when given. x: f32 [..., C];
// weight/bias: optional [C] (any float dtype). Statistics are accumulated in f32 or wider.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);

// x / sqrt(mean(x^2) + eps) * weight (when given). x: f32 [..., C]; weight optional [C].
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);

namespace cpu {
void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, const Tensor& y);
void rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& y);
}  // namespace cpu
namespace cuda {
void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, const Tensor& y);
void rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& y);
}  // namespace cuda

}  // namespace ib::ops
