#include "ops/conv.h"

#include "ops/dispatch.h"

namespace ib::ops {

Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dArgs& a, const Tensor& residual) {
  IB_CHECK(x.dtype() == DType::F32 && x.dim() == 4, "conv3d: input must be f32 [Cin, T, H, W], got {}", x.str());
  IB_CHECK((w.dtype() == DType::F32 || (w.dtype() == DType::BF16 && w.device() == Device::CUDA)) && w.dim() == 5,
           "conv3d: weight must be f32 (or bf16 on CUDA) [Cout, Cin, kt, kh, kw], got {} on {}", w.str(),
           device_name(w.device()));
  IB_CHECK(w.size(1) == x.size(0), "conv3d: input {} does not match weight {}", x.str(), w.str());
  IB_CHECK(!b.defined() || (b.dtype() == DType::F32 && b.numel() == w.size(0)),
           "conv3d: bias {} does not match weight {}", b.str(), w.str());
  IB_CHECK(a.stride_t >= 1 && a.stride_h >= 1 && a.stride_w >= 1, "conv3d: strides must be positive");
  IB_CHECK(a.pad_top >= 0 && a.pad_bottom >= 0 && a.pad_left >= 0 && a.pad_right >= 0 && a.pad_front >= 0,
           "conv3d: paddings must be non-negative");
  const int64_t Tp = a.pad_front + x.size(1), Hp = a.pad_top + x.size(2) + a.pad_bottom,
                Wp = a.pad_left + x.size(3) + a.pad_right;
  IB_CHECK(Tp >= w.size(2) && Hp >= w.size(3) && Wp >= w.size(4),
           "conv3d: padded input {}x{}x{} is smaller than the kernel of {}", Tp, Hp, Wp, w.str());
  const Shape out{w.size(0), (Tp - w.size(2)) / a.stride_t + 1, (Hp - w.size(3)) / a.stride_h + 1,
                  (Wp - w.size(4)) / a.stride_w + 1};
  IB_CHECK(!residual.defined() || (residual.dtype() == DType::F32 && residual.shape() == out),
           "conv3d: residual {} does not match the output {}", residual.str(), shape_str(out));
  const Device d = same_device("conv3d", {&x, &w, &b, &residual});
  Tensor y = Tensor::empty(out, DType::F32, d);
  IB_DISPATCH(d, conv3d, x, w, b, a, residual, y);
  return y;
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dArgs& args, const Tensor& residual) {
  IB_CHECK(x.dim() == 3, "conv2d: input must be [Cin, H, W], got {}", x.str());
  IB_CHECK(w.dim() == 4, "conv2d: weight must be [Cout, Cin, kh, kw], got {}", w.str());
  Conv3dArgs a = args;
  a.stride_t = 1;
  a.pad_front = 0;
  Tensor r;
  if (residual.defined()) {
    IB_CHECK(residual.dim() == 3, "conv2d: residual must be [Cout, Ho, Wo], got {}", residual.str());
    r = residual.view({residual.size(0), 1, residual.size(1), residual.size(2)});
  }
  const Tensor y = conv3d(x.view({x.size(0), 1, x.size(1), x.size(2)}),
                          w.view({w.size(0), w.size(1), 1, w.size(2), w.size(3)}), b, a, r);
  return y.view({y.size(0), y.size(2), y.size(3)});
}

}  // namespace ib::ops
