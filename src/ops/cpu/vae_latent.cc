// CPU latent (de)normalisation and clamp.
#include <algorithm>

#include "core/parallel.h"
#include "ops/vae_latent.h"

namespace ib::ops::cpu {

void latent_scale(const Tensor& x, const std::vector<float>& mean, const std::vector<float>& inv, bool inverse,
                  const Tensor& y) {
  const int64_t C = x.size(0), N = C > 0 ? x.numel() / C : 0;
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  for (int64_t c = 0; c < C; ++c) {
    const float m = mean[static_cast<size_t>(c)], s = inv[static_cast<size_t>(c)];
    const float* src = xp + c * N;
    float* dst = yp + c * N;
    if (inverse) {
      for (int64_t i = 0; i < N; ++i) dst[i] = src[i] / s + m;
    } else {
      for (int64_t i = 0; i < N; ++i) dst[i] = (src[i] - m) * s;
    }
  }
}

void clamp_(const Tensor& x, float lo, float hi) {
  float* p = x.data<float>();
  parallel_for(x.numel(), 65536, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) p[i] = std::clamp(p[i], lo, hi);
  });
}

}  // namespace ib::ops::cpu
