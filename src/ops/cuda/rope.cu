// CUDA 3-D RoPE: one thread per (token, pair), the angle and its cos/sin in double as on the CPU,
// applied to that pair in every head.
#include "ops/cuda/cuda_common.h"
#include "ops/rope.h"

namespace ib::ops::cuda {

namespace {
__global__ void rope_kernel(const float* x, float* y, int64_t L, int64_t heads, int64_t d, RopeSplit sp,
                            RopeGrid grid) {
  const int64_t half = d / 2;
  const int64_t hw = grid.height * grid.width;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < L * half;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t tok = idx / half, p = idx % half;
    // Which axis this pair rotates with, its index within that axis's table, and the position.
    int64_t j = p, pairs = sp.frames, pos = tok / hw;
    if (p >= sp.frames + sp.height) {
      j = p - sp.frames - sp.height;
      pairs = sp.width;
      pos = tok % grid.width;
    } else if (p >= sp.frames) {
      j = p - sp.frames;
      pairs = sp.height;
      pos = (tok % hw) / grid.width;
    }
    const double inv = 1.0 / pow(10000.0, static_cast<double>(2 * j) / static_cast<double>(2 * pairs));
    const double angle = static_cast<double>(pos) * inv;
    const double c = cos(angle), s = sin(angle);
    const int64_t C = heads * d;
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t i = tok * C + h * d + 2 * p;
      const double re = x[i], im = x[i + 1];
      y[i] = static_cast<float>(re * c - im * s);
      y[i + 1] = static_cast<float>(re * s + im * c);
    }
  }
}
}  // namespace

void rope_3d(const Tensor& x, int64_t num_heads, const RopeGrid& grid, const Tensor& y) {
  const int64_t L = x.size(0), d = x.size(1) / num_heads;
  if (L == 0 || d == 0) return;
  rope_kernel<<<blocks_for(L * (d / 2)), 256>>>(dev_f32(x, "rope_3d"), dev_f32(y, "rope_3d"), L, num_heads, d,
                                                rope_split(d), grid);
  check_launch("rope_3d");
}

}  // namespace ib::ops::cuda
