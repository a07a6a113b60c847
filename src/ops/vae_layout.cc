#include "ops/vae_layout.h"

#include "ops/dispatch.h"

namespace ib::ops {

Tensor cat_frames(const std::vector<Tensor>& xs) {
  IB_CHECK(!xs.empty(), "cat_frames: no tensors");
  const Tensor& x0 = xs.front();
  IB_CHECK(x0.dim() >= 2, "cat_frames: tensors must be [C, T, ...], got {}", x0.str());
  int64_t T = 0;
  for (const Tensor& x : xs) {
    Shape a = x.shape(), b = x0.shape();
    IB_CHECK(x.dim() == x0.dim() && x.dtype() == x0.dtype() && x.device() == x0.device(),
             "cat_frames: {} does not match {}", x.str(), x0.str());
    a[1] = b[1] = 0;
    IB_CHECK(a == b, "cat_frames: {} does not match {}", x.str(), x0.str());
    T += x.size(1);
  }
  Shape out_shape = x0.shape();
  out_shape[1] = T;
  Tensor y = Tensor::empty(out_shape, x0.dtype(), x0.device());
  int64_t t = 0;
  for (const Tensor& x : xs) {
    if (x.size(1) == 0) continue;
    IB_DISPATCH(x0.device(), copy_frames, x, y, FrameBlock{0, 0, 0, t, x0.size(0), x.size(1)});
    t += x.size(1);
  }
  return y;
}

Tensor slice_frames(const Tensor& x, int64_t t0, int64_t t1) {
  IB_CHECK(x.dim() >= 2 && 0 <= t0 && t0 <= t1 && t1 <= x.size(1), "slice_frames: [{}, {}) out of range for {}",
           t0, t1, x.str());
  Shape out_shape = x.shape();
  out_shape[1] = t1 - t0;
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  if (t1 > t0) IB_DISPATCH(x.device(), copy_frames, x, y, FrameBlock{0, t0, 0, 0, x.size(0), t1 - t0});
  return y;
}

Tensor interleave_channel_halves(const Tensor& x) {
  IB_CHECK(x.dim() >= 2 && x.size(0) % 2 == 0, "interleave_channel_halves: need [2C, T, ...], got {}", x.str());
  const int64_t C = x.size(0) / 2, T = x.size(1);
  Shape out_shape = x.shape();
  out_shape[0] = C;
  out_shape[1] = 2 * T;
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  for (int64_t k = 0; k < T; ++k) {
    IB_DISPATCH(x.device(), copy_frames, x, y, FrameBlock{0, k, 0, 2 * k, C, 1});
    IB_DISPATCH(x.device(), copy_frames, x, y, FrameBlock{C, k, 0, 2 * k + 1, C, 1});
  }
  return y;
}

Tensor upsample_nearest2x(const Tensor& x) {
  IB_CHECK(x.dtype() == DType::F32 && x.dim() >= 2, "upsample_nearest2x: input must be f32 [..., H, W], got {}",
           x.str());
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 1] *= 2;
  out_shape[out_shape.size() - 2] *= 2;
  Tensor y = Tensor::empty(out_shape, DType::F32, x.device());
  IB_DISPATCH(x.device(), upsample_nearest2x, x, y);
  return y;
}

Tensor transpose2d(const Tensor& x) {
  IB_CHECK(x.dtype() == DType::F32 && x.dim() == 2, "transpose2d: input must be f32 [R, C], got {}", x.str());
  Tensor y = Tensor::empty({x.size(1), x.size(0)}, DType::F32, x.device());
  IB_DISPATCH(x.device(), transpose2d, x, y);
  return y;
}

}  // namespace ib::ops
