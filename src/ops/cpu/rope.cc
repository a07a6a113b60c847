// CPU 3-D RoPE: per-axis cos/sin tables in double, then one rotation per pair in double.
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "ops/rope.h"

namespace ib::ops::cpu {

namespace {

// cos/sin of pos * theta_j for pos < n and the `pairs` frequencies of a table of width 2*pairs:
// theta_j = 1 / 10000^(2j / width), evaluated in the same order as upstream's rope_params.
void axis_table(int64_t n, int64_t pairs, std::vector<double>& cs, std::vector<double>& sn) {
  cs.resize(static_cast<size_t>(n * pairs));
  sn.resize(cs.size());
  const double width = static_cast<double>(2 * pairs);
  for (int64_t j = 0; j < pairs; ++j) {
    const double inv = 1.0 / std::pow(10000.0, static_cast<double>(2 * j) / width);
    for (int64_t p = 0; p < n; ++p) {
      const double angle = static_cast<double>(p) * inv;
      cs[static_cast<size_t>(p * pairs + j)] = std::cos(angle);
      sn[static_cast<size_t>(p * pairs + j)] = std::sin(angle);
    }
  }
}

}  // namespace

void rope_3d(const Tensor& x, int64_t num_heads, const RopeGrid& grid, const Tensor& y) {
  const int64_t C = x.size(1), d = C / num_heads;
  const RopeSplit sp = rope_split(d);
  std::vector<double> ct, st, ch, sh, cw, sw;
  axis_table(grid.frames, sp.frames, ct, st);
  axis_table(grid.height, sp.height, ch, sh);
  axis_table(grid.width, sp.width, cw, sw);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  const int64_t hw = grid.height * grid.width;
  parallel_for(x.size(0), 16, [&](int64_t s0, int64_t s1) {
    std::vector<double> c(static_cast<size_t>(d / 2)), s(c.size());
    for (int64_t tok = s0; tok < s1; ++tok) {
      const int64_t f = tok / hw, a = (tok % hw) / grid.width, b = tok % grid.width;
      // The angles of this token's d/2 pairs, the same for every head.
      size_t j = 0;
      for (int64_t i = 0; i < sp.frames; ++i, ++j) {
        c[j] = ct[static_cast<size_t>(f * sp.frames + i)];
        s[j] = st[static_cast<size_t>(f * sp.frames + i)];
      }
      for (int64_t i = 0; i < sp.height; ++i, ++j) {
        c[j] = ch[static_cast<size_t>(a * sp.height + i)];
        s[j] = sh[static_cast<size_t>(a * sp.height + i)];
      }
      for (int64_t i = 0; i < sp.width; ++i, ++j) {
        c[j] = cw[static_cast<size_t>(b * sp.width + i)];
        s[j] = sw[static_cast<size_t>(b * sp.width + i)];
      }
      const float* xr = xp + tok * C;
      float* yr = yp + tok * C;
      for (int64_t h = 0; h < num_heads; ++h) {
        for (size_t p = 0; p < c.size(); ++p) {
          const size_t i = static_cast<size_t>(h * d) + 2 * p;
          const double re = xr[i], im = xr[i + 1];
          yr[i] = static_cast<float>(re * c[p] - im * s[p]);
          yr[i + 1] = static_cast<float>(re * s[p] + im * c[p]);
        }
      }
    }
  });
}

}  // namespace ib::ops::cpu
