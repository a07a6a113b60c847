// 3-D rotary position embedding of the Wan DiT (spec 7.6): each head's D features form D/2
// adjacent pairs (x[2j], x[2j+1]) read as complex numbers; the first D/2 - 2*floor(D/6) pairs rotate
// by the token's frame index, the next floor(D/6) by its row, the last floor(D/6) by its column.
#pragma once

#include "core/tensor.h"

namespace ib::ops {

// The token grid of a patchified video: tokens are ordered frame, then row, then column.
struct RopeGrid {
  int64_t frames = 1;
  int64_t height = 1;
  int64_t width = 1;
};

// x: f32 [L, H*D] with L = frames*height*width and D even (q or k after their projections).
// Angles, cos/sin and the rotation are computed in double, the result rounded to f32, as upstream
// does. Returns f32 [L, H*D].
Tensor rope_3d(const Tensor& x, int64_t num_heads, const RopeGrid& grid);

namespace cpu {
void rope_3d(const Tensor& x, int64_t num_heads, const RopeGrid& grid, const Tensor& y);
}
namespace cuda {
void rope_3d(const Tensor& x, int64_t num_heads, const RopeGrid& grid, const Tensor& y);
}

// Rotation pairs per axis for head dim D: {frames, height, width}, summing to D/2.
struct RopeSplit {
  int64_t frames, height, width;
};
inline RopeSplit rope_split(int64_t head_dim) {
  const int64_t k = head_dim / 6;
  return {head_dim / 2 - 2 * k, k, k};
}

}  // namespace ib::ops
