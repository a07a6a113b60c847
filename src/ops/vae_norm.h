// The Wan-VAE's channel-first RMS_norm: at every position of x [C, ...],
// y = x / max(‖x‖₂ over C, 1e-12) · √C · γ, optionally followed by SiLU (the VAE always applies
// SiLU right after its norms, so the two are fused to save a pass over the activations).
#pragma once

#include "core/tensor.h"

namespace ib::ops {

// x: f32 [C, ...]; gamma: f32 with C elements (any shape, e.g. [C,1,1,1]). Returns x's shape.
Tensor rms_norm_channels(const Tensor& x, const Tensor& gamma, bool silu = false);

namespace cpu {
void rms_norm_channels(const Tensor& x, const Tensor& gamma, bool silu, const Tensor& y);
}
namespace cuda {
void rms_norm_channels(const Tensor& x, const Tensor& gamma, bool silu, const Tensor& y);
}

}  // namespace ib::ops
