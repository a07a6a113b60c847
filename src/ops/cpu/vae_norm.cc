// CPU channel RMS_norm (+SiLU). Positions are processed in blocks so that every pass reads rows
// of x contiguously; the sum of squares is accumulated in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "ops/vae_norm.h"

namespace ib::ops::cpu {

void rms_norm_channels(const Tensor& x, const Tensor& gamma, bool silu, const Tensor& y) {
  const int64_t C = x.size(0), N = C > 0 ? x.numel() / C : 0;
  const float* xp = x.data<float>();
  const float* gp = gamma.data<float>();
  float* yp = y.data<float>();
  const float scale = std::sqrt(static_cast<float>(C));
  constexpr int64_t kBlock = 256;
  parallel_for((N + kBlock - 1) / kBlock, 1, [&](int64_t b0, int64_t b1) {
    std::vector<double> ss(kBlock);
    std::vector<float> denom(kBlock);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t n0 = blk * kBlock, nb = std::min(kBlock, N - n0);
      std::fill_n(ss.begin(), nb, 0.0);
      for (int64_t c = 0; c < C; ++c) {
        const float* row = xp + c * N + n0;
        for (int64_t i = 0; i < nb; ++i) ss[i] += static_cast<double>(row[i]) * row[i];
      }
      // F.normalize: x / max(‖x‖, eps), then · √C · γ (in this order, as upstream).
      for (int64_t i = 0; i < nb; ++i) denom[i] = std::max(static_cast<float>(std::sqrt(ss[i])), 1e-12f);
      for (int64_t c = 0; c < C; ++c) {
        const float* row = xp + c * N + n0;
        float* out = yp + c * N + n0;
        const float g = gp[c];
        for (int64_t i = 0; i < nb; ++i) {
          const float v = row[i] / denom[i] * scale * g;
          out[i] = silu ? v / (1.0f + std::exp(-v)) : v;
        }
      }
    }
  });
}

}  // namespace ib::ops::cpu
