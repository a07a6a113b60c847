// CPU nearest ×2 upsampling, blocked 2-D transpose and the frame-block copy (one memcpy per channel).
#include <algorithm>

#include "core/parallel.h"
#include "ops/vae_layout.h"

namespace ib::ops::cpu {

void upsample_nearest2x(const Tensor& x, const Tensor& y) {
  const int64_t H = x.size(-2), W = x.size(-1);
  const int64_t planes = H * W > 0 ? x.numel() / (H * W) : 0;
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  parallel_for(planes * H, std::max<int64_t>(1, 4096 / std::max<int64_t>(W, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // r = plane * H + input row
      const float* src = xp + r * W;
      float* dst = yp + r * 4 * W;  // output rows 2·iy and 2·iy+1 of the same plane
      for (int64_t ix = 0; ix < W; ++ix) dst[2 * ix] = dst[2 * ix + 1] = src[ix];
      std::copy(dst, dst + 2 * W, dst + 2 * W);
    }
  });
}

void copy_frames(const Tensor& src, const Tensor& dst, const FrameBlock& b) {
  for (int64_t c = 0; c < b.channels; ++c)
    copy_bytes(dst.select(b.dst_c0 + c).slice(b.dst_t0, b.dst_t0 + b.frames),
               src.select(b.src_c0 + c).slice(b.src_t0, b.src_t0 + b.frames));
}

void transpose2d(const Tensor& x, const Tensor& y) {
  const int64_t R = x.size(0), C = x.size(1);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  constexpr int64_t kTile = 32;
  parallel_for((R + kTile - 1) / kTile, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t r0 = b0 * kTile; r0 < std::min(R, b1 * kTile); r0 += kTile)
      for (int64_t c0 = 0; c0 < C; c0 += kTile)
        for (int64_t r = r0; r < std::min(R, r0 + kTile); ++r)
          for (int64_t c = c0; c < std::min(C, c0 + kTile); ++c) yp[c * R + r] = xp[r * C + c];
  });
}

}  // namespace ib::ops::cpu
