// Layout helpers for the Wan-VAE's channel-first videos [C, T, H, W]: frame concatenation and
// slicing (dim 1), the upsample3d frame interleave, nearest ×2 upsampling of each frame, and a 2-D
// transpose (channels × pixels ↔ pixels × channels for the per-frame attention). The f32 <-> bf16
// conversion is in ops/convert.h.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace ib::ops {

// Concatenates [C, T_i, ...] tensors (equal C and trailing dims) along dim 1. Any device.
Tensor cat_frames(const std::vector<Tensor>& xs);
// Frames [t0, t1) of x [C, T, ...], copied. Any device.
Tensor slice_frames(const Tensor& x, int64_t t0, int64_t t1);
// [2C, T, ...] -> [C, 2T, ...]: frame 2k takes channels 0..C-1 of frame k, frame 2k+1 channels
// C..2C-1 (upstream's reshape(b, 2, c, t, h, w) + stack on dim 3). Any device.
Tensor interleave_channel_halves(const Tensor& x);

// x: f32 [..., H, W] -> [..., 2H, 2W]; output (y, x) copies input (⌊y/2⌋, ⌊x/2⌋).
Tensor upsample_nearest2x(const Tensor& x);
// x: f32 [R, C] -> [C, R].
Tensor transpose2d(const Tensor& x);

// The copy behind cat_frames, slice_frames and interleave_channel_halves: frames [src_t0,
// src_t0 + frames) of channels [src_c0, src_c0 + channels) of src [Cs, Ts, ...] go to frames
// [dst_t0, ...) of channels [dst_c0, ...) of dst [Cd, Td, ...] (same dtype and trailing dims).
struct FrameBlock {
  int64_t src_c0 = 0, src_t0 = 0, dst_c0 = 0, dst_t0 = 0, channels = 0, frames = 0;
};

namespace cpu {
void upsample_nearest2x(const Tensor& x, const Tensor& y);
void transpose2d(const Tensor& x, const Tensor& y);
void copy_frames(const Tensor& src, const Tensor& dst, const FrameBlock& b);
}  // namespace cpu
namespace cuda {
void upsample_nearest2x(const Tensor& x, const Tensor& y);
void transpose2d(const Tensor& x, const Tensor& y);
void copy_frames(const Tensor& src, const Tensor& dst, const FrameBlock& b);
}  // namespace cuda

}  // namespace ib::ops
