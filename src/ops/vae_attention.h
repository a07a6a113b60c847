// The core of the Wan-VAE's AttentionBlock on one frame, in the channel-first layout the VAE keeps:
// x [C, N] (N = h·w pixels, row-major), one head, q/k/v = W·x + b with W the rows of to_qkv
// (q: 0..C-1, k: C..2C-1, v: 2C..3C-1), o = softmax(qᵀk · scale) v. The head dim is the channel
// count (384 in the release), wider than the general attention kernel takes.
#pragma once

#include "core/tensor.h"

namespace ib::ops {

// x: f32 [C, N]; qkv_w: f32 [3C, C] (or bf16 on CUDA: the projections run on the tensor cores with
// bf16 operands, the two attention products in TF32); qkv_b: f32 [3C]. Returns o as f32 [C, N].
Tensor pixel_attention(const Tensor& x, const Tensor& qkv_w, const Tensor& qkv_b, float scale);

namespace cpu {
void pixel_attention(const Tensor& x, const Tensor& qkv_w, const Tensor& qkv_b, float scale, const Tensor& y);
}
namespace cuda {
void pixel_attention(const Tensor& x, const Tensor& qkv_w, const Tensor& qkv_b, float scale, const Tensor& y);
}

}  // namespace ib::ops
