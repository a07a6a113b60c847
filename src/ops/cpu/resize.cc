// CPU bicubic resize, following PyTorch's upsample_bicubic2d CPU kernel operation by operation
// in f32 so that results agree to the last bit where the compiler does not contract a*b+c.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "ops/resize.h"

namespace ib::ops::cpu {

namespace {

constexpr float kA = -0.75f;

// Keys's cubic for |x| <= 1 and for 1 < |x| < 2, in PyTorch's Horner forms.
float cubic1(float x) { return ((kA + 2) * x - (kA + 3)) * x * x + 1; }
float cubic2(float x) { return ((kA * x - 5 * kA) * x + 8 * kA) * x - 4 * kA; }

// Per output index: the four clamped source taps and their weights.
struct Taps {
  std::vector<int64_t> idx;  // [O * 4]
  std::vector<float> w;      // [O * 4]
};

Taps make_taps(int64_t in, int64_t out) {
  Taps t;
  t.idx.resize(static_cast<size_t>(out * 4));
  t.w.resize(static_cast<size_t>(out * 4));
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t d = 0; d < out; ++d) {
    // Not clamped at 0 for cubic (align_corners=False); may be negative.
    const float u = scale * (static_cast<float>(d) + 0.5f) - 0.5f;
    const int64_t i = std::min(static_cast<int64_t>(std::floor(u)), in - 1);
    const float lambda = std::min(std::max(u - static_cast<float>(i), 0.0f), 1.0f);
    // PyTorch forms the outer-right argument as (1 - t) + 1, each step rounded to f32.
    const float x1 = lambda;
    const float x2 = 1.0f - lambda;
    const float w[4] = {cubic2(x1 + 1.0f), cubic1(x1), cubic1(x2), cubic2(x2 + 1.0f)};
    for (int64_t k = 0; k < 4; ++k) {
      t.idx[static_cast<size_t>(d * 4 + k)] = std::clamp<int64_t>(i - 1 + k, 0, in - 1);
      t.w[static_cast<size_t>(d * 4 + k)] = w[k];
    }
  }
  return t;
}

}  // namespace

void resize_bicubic(const Tensor& x, const Tensor& y) {
  const int64_t H = x.size(-2), W = x.size(-1);
  const int64_t OH = y.size(-2), OW = y.size(-1);
  const int64_t planes = x.numel() / (H * W);
  const Taps ty = make_taps(H, OH), tx = make_taps(W, OW);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  parallel_for(planes * OH, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t p = r / OH, oy = r % OH;
      const float* src = xp + p * H * W;
      float* dst = yp + p * OH * OW + oy * OW;
      const int64_t* iy = &ty.idx[static_cast<size_t>(oy * 4)];
      const float* wy = &ty.w[static_cast<size_t>(oy * 4)];
      for (int64_t ox = 0; ox < OW; ++ox) {
        const int64_t* ix = &tx.idx[static_cast<size_t>(ox * 4)];
        const float* wx = &tx.w[static_cast<size_t>(ox * 4)];
        float out = 0.0f;
        for (int64_t a = 0; a < 4; ++a) {
          const float* row = src + iy[a] * W;
          float inner = row[ix[0]] * wx[0];
          for (int64_t b = 1; b < 4; ++b) inner += row[ix[b]] * wx[b];
          out = a == 0 ? inner * wy[0] : out + inner * wy[a];
        }
        dst[ox] = out;
      }
    }
  });
}

}  // namespace ib::ops::cpu
