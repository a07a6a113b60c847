#include "ops/vae_norm.h"

#include "ops/dispatch.h"

namespace ib::ops {

Tensor rms_norm_channels(const Tensor& x, const Tensor& gamma, bool silu) {
  IB_CHECK(x.dtype() == DType::F32 && x.dim() >= 1, "rms_norm_channels: input must be f32 [C, ...], got {}",
           x.str());
  IB_CHECK(gamma.dtype() == DType::F32 && gamma.numel() == x.size(0),
           "rms_norm_channels: gamma {} does not have the {} channels of {}", gamma.str(), x.size(0), x.str());
  const Device d = same_device("rms_norm_channels", {&x, &gamma});
  Tensor y = Tensor::empty(x.shape(), DType::F32, d);
  IB_DISPATCH(d, rms_norm_channels, x, gamma, silu, y);
  return y;
}

}  // namespace ib::ops
