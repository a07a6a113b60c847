// Per-channel latent (de)normalisation of the Wan-VAE and the final clamp, on [C, ...] tensors.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace ib::ops {

// y[c] = (x[c] - mean[c]) * inv[c]   (the encoder's output normalisation)
Tensor latent_normalize(const Tensor& x, const std::vector<float>& mean, const std::vector<float>& inv);
// y[c] = x[c] / inv[c] + mean[c]     (the decoder's input; divides by the reciprocal as upstream)
Tensor latent_denormalize(const Tensor& x, const std::vector<float>& mean, const std::vector<float>& inv);
// In place: x = min(max(x, lo), hi).
void clamp_(const Tensor& x, float lo, float hi);

namespace cpu {
void latent_scale(const Tensor& x, const std::vector<float>& mean, const std::vector<float>& inv, bool inverse,
                  const Tensor& y);
void clamp_(const Tensor& x, float lo, float hi);
}  // namespace cpu
namespace cuda {
void latent_scale(const Tensor& x, const std::vector<float>& mean, const std::vector<float>& inv, bool inverse,
                  const Tensor& y);
void clamp_(const Tensor& x, float lo, float hi);
}  // namespace cuda

}  // namespace ib::ops
