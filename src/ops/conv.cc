#include "ops/conv.h"

#include "ops/convert.h"
#include "ops/dispatch.h"
#include "ops/vae_layout.h"
#include "ops/vae_norm.h"

namespace ib::ops {

namespace {

// An activation of a conv (input, cached frames, residual, output dtype): f32 anywhere, bf16 only
// on CUDA with bf16 weights (the VAE's bf16 activations).
bool activation_dtype_ok(DType dt, const Tensor& w) {
  return dt == DType::F32 || (dt == DType::BF16 && w.dtype() == DType::BF16 && w.device() == Device::CUDA);
}

// Checks a conv of an input of shape xs ([Cin, T, H, W], its dtype checked by the caller) and returns
// the output shape.
Shape conv_output_shape(const char* op, const Shape& xs, const Tensor& w, const Tensor& b, const Conv3dArgs& a,
                        const Tensor& residual) {
  IB_CHECK((w.dtype() == DType::F32 || (w.dtype() == DType::BF16 && w.device() == Device::CUDA)) && w.dim() == 5,
           "{}: weight must be f32 (or bf16 on CUDA) [Cout, Cin, kt, kh, kw], got {} on {}", op, w.str(),
           device_name(w.device()));
  IB_CHECK(w.size(1) == xs[0], "{}: input {} does not match weight {}", op, shape_str(xs), w.str());
  IB_CHECK(!b.defined() || (b.dtype() == DType::F32 && b.numel() == w.size(0)),
           "{}: bias {} does not match weight {}", op, b.str(), w.str());
  IB_CHECK(a.stride_t >= 1 && a.stride_h >= 1 && a.stride_w >= 1, "{}: strides must be positive", op);
  IB_CHECK(a.pad_top >= 0 && a.pad_bottom >= 0 && a.pad_left >= 0 && a.pad_right >= 0 && a.pad_front >= 0,
           "{}: paddings must be non-negative", op);
  const int64_t Tp = a.pad_front + xs[1], Hp = a.pad_top + xs[2] + a.pad_bottom, Wp = a.pad_left + xs[3] + a.pad_right;
  IB_CHECK(Tp >= w.size(2) && Hp >= w.size(3) && Wp >= w.size(4),
           "{}: padded input {}x{}x{} is smaller than the kernel of {}", op, Tp, Hp, Wp, w.str());
  const Shape out{w.size(0), (Tp - w.size(2)) / a.stride_t + 1, (Hp - w.size(3)) / a.stride_h + 1,
                  (Wp - w.size(4)) / a.stride_w + 1};
  IB_CHECK(!residual.defined() || (activation_dtype_ok(residual.dtype(), w) && residual.shape() == out),
           "{}: residual {} does not match the output {} (bf16 only with bf16 weights on CUDA)", op, residual.str(),
           shape_str(out));
  return out;
}

}  // namespace

Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dArgs& a, const Tensor& residual,
              DType out_dtype) {
  IB_CHECK(activation_dtype_ok(x.dtype(), w) && activation_dtype_ok(out_dtype, w) && x.dim() == 4,
           "conv3d: input must be f32 [Cin, T, H, W] (or bf16 in and out with bf16 weights on CUDA), got {} -> {}",
           x.str(), dtype_name(out_dtype));
  const Shape out = conv_output_shape("conv3d", x.shape(), w, b, a, residual);
  const Device d = same_device("conv3d", {&x, &w, &b, &residual});
  Tensor y = Tensor::empty(out, out_dtype, d);
  IB_DISPATCH(d, conv3d, x, w, b, a, residual, y);
  return y;
}

Tensor norm_silu_conv3d(const Tensor& prefix, const Tensor& x, const Tensor& gamma, const Tensor& w, const Tensor& b,
                        const Conv3dArgs& a, const Tensor& residual, DType out_dtype) {
  return norm_silu_conv3d(prefix.defined() ? std::vector<Tensor>{prefix} : std::vector<Tensor>{}, x, gamma, w, b, a,
                          residual, out_dtype);
}

Tensor norm_silu_conv3d(const std::vector<Tensor>& prefix, const Tensor& x, const Tensor& gamma, const Tensor& w,
                        const Tensor& b, const Conv3dArgs& a, const Tensor& residual, DType out_dtype) {
  IB_CHECK(activation_dtype_ok(x.dtype(), w) && activation_dtype_ok(out_dtype, w) && x.dim() == 4,
           "norm_silu_conv3d: input must be f32 [Cin, T, H, W] (or bf16 in and out with bf16 weights on CUDA), got "
           "{} -> {}", x.str(), dtype_name(out_dtype));
  IB_CHECK(prefix.size() <= 2, "norm_silu_conv3d: cached frames in {} parts (at most 2)", prefix.size());
  Shape xs = x.shape();
  for (const Tensor& p : prefix) {
    IB_CHECK(p.defined() && activation_dtype_ok(p.dtype(), w) && p.dim() == 4 && p.size(0) == x.size(0) &&
                 p.size(2) == x.size(2) && p.size(3) == x.size(3),
             "norm_silu_conv3d: cached frames {} do not match the input {}", p.str(), x.str());
    (void)same_device("norm_silu_conv3d", {&p, &x});
    xs[1] += p.size(1);
  }
  IB_CHECK(gamma.dtype() == DType::F32 && gamma.numel() == x.size(0),
           "norm_silu_conv3d: gamma {} does not have the {} channels of {}", gamma.str(), x.size(0), x.str());
  const Shape out = conv_output_shape("norm_silu_conv3d", xs, w, b, a, residual);
  [[maybe_unused]] const Device d = same_device("norm_silu_conv3d", {&x, &gamma, &w, &b, &residual});
#ifdef INBETWEEN_HAVE_CUDA
  if (d == Device::CUDA) {
    Tensor y = Tensor::empty(out, out_dtype, d);
    if (cuda::norm_silu_conv3d(prefix, x, gamma, w, b, a, residual, y)) return y;
  }
#endif
  // The composition runs the norm in f32 (bf16 activations are widened first).
  std::vector<Tensor> parts;
  for (const Tensor& p : prefix) parts.push_back(to_dtype(p, DType::F32));
  parts.push_back(to_dtype(x, DType::F32));
  const Tensor in = parts.size() == 1 ? parts.front() : cat_frames(parts);
  return conv3d(rms_norm_channels(in, gamma, /*silu=*/true), w, b, a, residual, out_dtype);
}

Tensor upsample2x_conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dArgs& a, DType out_dtype) {
  IB_CHECK(activation_dtype_ok(x.dtype(), w) && activation_dtype_ok(out_dtype, w) && x.dim() == 4,
           "upsample2x_conv3d: input must be f32 [Cin, T, H, W] (or bf16 in and out with bf16 weights on CUDA), got "
           "{} -> {}", x.str(), dtype_name(out_dtype));
  const Shape out = conv_output_shape("upsample2x_conv3d", {x.size(0), x.size(1), 2 * x.size(2), 2 * x.size(3)}, w,
                                      b, a, Tensor());
  [[maybe_unused]] const Device d = same_device("upsample2x_conv3d", {&x, &w, &b});
#ifdef INBETWEEN_HAVE_CUDA
  if (d == Device::CUDA) {
    Tensor y = Tensor::empty(out, out_dtype, d);
    if (cuda::upsample2x_conv3d(x, w, b, a, y)) return y;
  }
#endif
  return conv3d(upsample_nearest2x(to_dtype(x, DType::F32)), w, b, a, Tensor(), out_dtype);
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
