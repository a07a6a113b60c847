// CPU LayerNorm / RMSNorm over the last dimension: one row per task, statistics in f64 so the
// reference is not the weak link; the normalised value is computed in f32.
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "ops/norm.h"

namespace ib::ops::cpu {

namespace {
// Parameter vector as f32 (empty when not given).
std::vector<float> as_f32(const Tensor& p) {
  if (!p.defined()) return {};
  std::vector<float> v(static_cast<size_t>(p.numel()));
  convert_to_f32(p.raw(), p.dtype(), v.data(), v.size());
  return v;
}
}  // namespace

void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, const Tensor& y) {
  const int64_t C = x.size(-1);
  const int64_t rows = C == 0 ? 0 : x.numel() / C;
  const std::vector<float> w = as_f32(weight), b = as_f32(bias);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  parallel_for(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(C, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = xp + r * C;
      float* yr = yp + r * C;
      double sum = 0;
      for (int64_t c = 0; c < C; ++c) sum += xr[c];
      const double mean = sum / static_cast<double>(C);
      double sq = 0;
      for (int64_t c = 0; c < C; ++c) sq += (xr[c] - mean) * (xr[c] - mean);
      const auto m = static_cast<float>(mean);
      const auto inv = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(C) + eps));
      for (int64_t c = 0; c < C; ++c) {
        float v = (xr[c] - m) * inv;
        if (!w.empty()) v *= w[static_cast<size_t>(c)];
        if (!b.empty()) v += b[static_cast<size_t>(c)];
        yr[c] = v;
      }
    }
  });
}

void rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& y) {
  const int64_t C = x.size(-1);
  const int64_t rows = C == 0 ? 0 : x.numel() / C;
  const std::vector<float> w = as_f32(weight);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  parallel_for(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(C, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = xp + r * C;
      float* yr = yp + r * C;
      double sq = 0;
      for (int64_t c = 0; c < C; ++c) sq += static_cast<double>(xr[c]) * xr[c];
      const auto inv = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(C) + eps));
      for (int64_t c = 0; c < C; ++c) {
        float v = xr[c] * inv;
        if (!w.empty()) v *= w[static_cast<size_t>(c)];
        yr[c] = v;
      }
    }
  });
}

}  // namespace ib::ops::cpu
