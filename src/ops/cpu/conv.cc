// CPU conv3d: im2col over a tile of output rows, then one OpenBLAS sgemm per tile
// (y[Cout, N] += w[Cout, K] · col[K, N], K = Cin·kt·kh·kw). Output rows (frame, y) are contiguous
// in y, so a tile may span several frames; its size bounds the col buffer (~32 MB), so memory does
// not grow with the frame size. Bias and the optional residual are written first (beta = 1).
#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/parallel.h"
#include "ops/conv.h"

namespace ib::ops::cpu {
namespace {

struct Geometry {
  int64_t Cin, T, H, W;      // input
  int64_t kt, kh, kw;        // kernel
  int64_t Cout, To, Ho, Wo;  // output
  Conv3dArgs a;
};

// Fills col[k, rr * Wo + ox] for output rows r0 .. r0 + R - 1 (row r = frame * Ho + y).
void im2col(const Geometry& g, const float* x, int64_t r0, int64_t R, float* col) {
  const int64_t K = g.Cin * g.kt * g.kh * g.kw, N = R * g.Wo;
  parallel_for(K, std::max<int64_t>(1, 16384 / std::max<int64_t>(N, 1)), [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t dx = k % g.kw, dy = (k / g.kw) % g.kh, dt = (k / (g.kw * g.kh)) % g.kt,
                    ci = k / (g.kw * g.kh * g.kt);
      // Columns ox whose input column ix = ox * stride_w + dx - pad_left lies inside [0, W).
      const int64_t sw = g.a.stride_w, off = dx - g.a.pad_left;
      const int64_t lo = std::clamp<int64_t>(off >= 0 ? 0 : (-off + sw - 1) / sw, 0, g.Wo);
      const int64_t hi = std::clamp<int64_t>(g.W - off > 0 ? (g.W - off + sw - 1) / sw : 0, lo, g.Wo);
      float* dst = col + k * N;
      for (int64_t rr = 0; rr < R; ++rr, dst += g.Wo) {
        const int64_t r = r0 + rr, to = r / g.Ho, oy = r % g.Ho;
        const int64_t ti = to * g.a.stride_t + dt - g.a.pad_front, iy = oy * g.a.stride_h + dy - g.a.pad_top;
        if (ti < 0 || ti >= g.T || iy < 0 || iy >= g.H) {
          std::fill_n(dst, g.Wo, 0.0f);
          continue;
        }
        const float* src = x + ((ci * g.T + ti) * g.H + iy) * g.W;
        std::fill_n(dst, lo, 0.0f);
        if (sw == 1) {
          std::memcpy(dst + lo, src + lo + off, static_cast<size_t>(hi - lo) * sizeof(float));
        } else {
          for (int64_t ox = lo; ox < hi; ++ox) dst[ox] = src[ox * sw + off];
        }
        std::fill(dst + hi, dst + g.Wo, 0.0f);
      }
    }
  });
}

}  // namespace

void conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dArgs& a, const Tensor& residual,
            const Tensor& y) {
  const Geometry g{x.size(0), x.size(1), x.size(2), x.size(3), w.size(2), w.size(3), w.size(4),
                   y.size(0), y.size(1), y.size(2), y.size(3), a};
  const int64_t P = g.To * g.Ho * g.Wo, K = g.Cin * g.kt * g.kh * g.kw;
  float* yp = y.data<float>();
  if (y.numel() == 0) return;

  // y = bias + residual (or 0); the products below accumulate into it.
  const float* bp = b.defined() ? b.data<float>() : nullptr;
  const float* rp = residual.defined() ? residual.data<float>() : nullptr;
  parallel_for(g.Cout, std::max<int64_t>(1, 65536 / P), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      float* row = yp + c * P;
      const float bias = bp ? bp[c] : 0.0f;
      if (rp) {
        const float* rrow = rp + c * P;
        for (int64_t i = 0; i < P; ++i) row[i] = rrow[i] + bias;
      } else {
        std::fill_n(row, P, bias);
      }
    }
  });
  if (K == 0) return;

  const float* xp = x.data<float>();
  const float* wp = w.data<float>();
  const auto M = static_cast<blasint>(g.Cout), Kb = static_cast<blasint>(K);
  const bool pointwise = g.kt == 1 && g.kh == 1 && g.kw == 1 && a.stride_t == 1 && a.stride_h == 1 &&
                         a.stride_w == 1 && a.pad_front == 0 && a.pad_top == 0 && a.pad_bottom == 0 &&
                         a.pad_left == 0 && a.pad_right == 0;
  if (pointwise) {  // 1×1×1: the input already is the [Cin, P] matrix
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, static_cast<blasint>(P), Kb, 1.0f, wp, Kb, xp,
                static_cast<blasint>(P), 1.0f, yp, static_cast<blasint>(P));
    return;
  }

  constexpr int64_t kColBudget = int64_t{8} << 20;  // floats in the col buffer (32 MB)
  const int64_t rows = g.To * g.Ho;
  const int64_t R = std::clamp<int64_t>(kColBudget / std::max<int64_t>(K * g.Wo, 1), 1, rows);
  std::vector<float> col(static_cast<size_t>(K * R * g.Wo));
  for (int64_t r0 = 0; r0 < rows; r0 += R) {
    const int64_t nr = std::min(R, rows - r0), N = nr * g.Wo;
    im2col(g, xp, r0, nr, col.data());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, static_cast<blasint>(N), Kb, 1.0f, wp, Kb,
                col.data(), static_cast<blasint>(N), 1.0f, yp + r0 * g.Wo, static_cast<blasint>(P));
  }
}

}  // namespace ib::ops::cpu
