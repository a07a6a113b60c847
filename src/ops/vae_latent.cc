#include "ops/vae_latent.h"

#include "ops/dispatch.h"

namespace ib::ops {
namespace {

Tensor latent_scale(const Tensor& x, const std::vector<float>& mean, const std::vector<float>& inv, bool inverse) {
  IB_CHECK(x.dtype() == DType::F32 && x.dim() >= 1, "latent (de)normalisation: input must be f32 [C, ...], got {}",
           x.str());
  IB_CHECK(static_cast<int64_t>(mean.size()) == x.size(0) && static_cast<int64_t>(inv.size()) == x.size(0),
           "latent (de)normalisation: {} means and {} scales for {}", mean.size(), inv.size(), x.str());
  Tensor y = Tensor::empty(x.shape(), DType::F32, x.device());
  IB_DISPATCH(x.device(), latent_scale, x, mean, inv, inverse, y);
  return y;
}

}  // namespace

Tensor latent_normalize(const Tensor& x, const std::vector<float>& mean, const std::vector<float>& inv) {
  return latent_scale(x, mean, inv, false);
}

Tensor latent_denormalize(const Tensor& x, const std::vector<float>& mean, const std::vector<float>& inv) {
  return latent_scale(x, mean, inv, true);
}

void clamp_(const Tensor& x, float lo, float hi) {
  IB_CHECK(x.dtype() == DType::F32, "clamp_: input must be f32, got {}", x.str());
  IB_CHECK(lo <= hi, "clamp_: empty range [{}, {}]", lo, hi);
  IB_DISPATCH(x.device(), clamp_, x, lo, hi);
}

}  // namespace ib::ops
