// First/last-frame conditioning: the target video size, fitting a last frame of another size,
// the 4-channel frame mask and the pixel-space conditioning video (spec sections 4.2, 4.3, 4.5, 8.1).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace ib {

struct VideoSize {
  int64_t height = 0;
  int64_t width = 0;
};

// Size of the generated video from the first image's size and a pixel budget, exactly as upstream
// computes it in double precision (multiples of 16; e.g. 832x480 @ 399360 -> 832x464).
VideoSize target_size(int64_t image_height, int64_t image_width, double max_area);

// Checks a frame count: F = 4n + 1 with F >= 1. Returns the latent frame count n + 1.
int64_t latent_frames(int64_t frames);

// The last image fitted to the first image's size (intended behaviour; upstream's is broken, see
// spec 4.3): scaled by r = max(W0/W1, H0/H1) with PyTorch bicubic to round(W1 r) x round(H1 r),
// then centre-cropped to H0 x W0. Same-size images are returned unchanged. image: [3, H1, W1].
Tensor fit_last_frame(const Tensor& last, int64_t height, int64_t width);

// The last image as upstream's FLF2V actually processes it (spec 4.3, for reproducing upstream runs):
// no resize; torchvision center_crop to [round(W1 r), round(H1 r)] read as (rows, columns), zero
// padding where that is larger than the image. Same-size images are returned unchanged.
// Returns [3, round(W1 r), round(H1 r)].
Tensor fit_last_frame_upstream(const Tensor& last, int64_t height, int64_t width);

// The mask [4, T', h, w]: latent frame 0 all ones, the last latent frame has channel 3 = 1 (with
// with_last; i2v conditions on the first frame only), the rest zero, for any F = 4n + 1 (upstream
// hard-codes 81 frames).
Tensor frame_mask(int64_t frames, int64_t lat_h, int64_t lat_w, bool with_last = true);

// [3, F, H, W]: frame 0 = first, frames 1..F-2 zero, frame F-1 = last (both already [3, H, W]);
// an undefined `last` (i2v) leaves frame F-1 zero too.
Tensor conditioning_video(const Tensor& first, const Tensor& last, int64_t frames);

}  // namespace ib
