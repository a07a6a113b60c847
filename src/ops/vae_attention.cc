#include "ops/vae_attention.h"

#include "ops/dispatch.h"

namespace ib::ops {

Tensor pixel_attention(const Tensor& x, const Tensor& qkv_w, const Tensor& qkv_b, float scale) {
  IB_CHECK(x.dtype() == DType::F32 && x.dim() == 2, "pixel_attention: input must be f32 [C, N], got {}", x.str());
  const int64_t C = x.size(0);
  IB_CHECK((qkv_w.dtype() == DType::F32 || (qkv_w.dtype() == DType::BF16 && qkv_w.device() == Device::CUDA)) &&
               qkv_w.shape() == (Shape{3 * C, C}),
           "pixel_attention: to_qkv weight must be f32 (or bf16 on CUDA) [{}, {}], got {}", 3 * C, C, qkv_w.str());
  IB_CHECK(qkv_b.dtype() == DType::F32 && qkv_b.numel() == 3 * C, "pixel_attention: to_qkv bias must be f32 [{}], got {}",
           3 * C, qkv_b.str());
  IB_CHECK(x.size(1) > 0, "pixel_attention: no pixels in {}", x.str());
  const Device d = same_device("pixel_attention", {&x, &qkv_w, &qkv_b});
  Tensor y = Tensor::empty(x.shape(), DType::F32, d);
  IB_DISPATCH(d, pixel_attention, x, qkv_w, qkv_b, scale, y);
  return y;
}

}  // namespace ib::ops
