// resize_bicubic: PyTorch's interpolate(mode="bicubic", align_corners=False) with an explicit
// output size and no antialiasing (spec 4.4), on the last two dimensions.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace ib::ops {

// x: f32 [C, H, W] or [N, C, H, W]. Returns f32 with H, W replaced by out_h, out_w.
// Keys's cubic with A = -0.75, source index s*(d+0.5)-0.5 in f32, edge taps clamped; the
// horizontal pass is inner, the vertical outer, as PyTorch's CPU kernel sums them.
Tensor resize_bicubic(const Tensor& x, int64_t out_h, int64_t out_w);

namespace cpu {
void resize_bicubic(const Tensor& x, const Tensor& y);
}

}  // namespace ib::ops
