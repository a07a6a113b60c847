#include "ops/resize.h"

#include "ops/dispatch.h"

namespace ib::ops {

Tensor resize_bicubic(const Tensor& x, int64_t out_h, int64_t out_w) {
  IB_CHECK(x.dtype() == DType::F32, "resize_bicubic: input must be f32, got {}", x.str());
  IB_CHECK(x.dim() == 3 || x.dim() == 4, "resize_bicubic: input must be [C, H, W] or [N, C, H, W], got {}",
           x.str());
  IB_CHECK(x.size(-1) > 0 && x.size(-2) > 0, "resize_bicubic: empty input {}", x.str());
  IB_CHECK(out_h > 0 && out_w > 0, "resize_bicubic: invalid output size {}x{}", out_w, out_h);
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 2] = out_h;
  out_shape[out_shape.size() - 1] = out_w;
  if (x.device() == Device::CPU) {
    Tensor y = Tensor::empty(out_shape, DType::F32);
    cpu::resize_bicubic(x, y);
    return y;
  }
  // No GPU kernel yet: the two image resizes per job are small, so they run on the CPU.
  Tensor y = Tensor::empty(out_shape, DType::F32);
  cpu::resize_bicubic(x.to(Device::CPU), y);
  return y.to(x.device());
}

}  // namespace ib::ops
