#include "ops/rope.h"

#include "ops/dispatch.h"

namespace ib::ops {

Tensor rope_3d(const Tensor& x, int64_t num_heads, const RopeGrid& grid) {
  IB_CHECK(x.dtype() == DType::F32 && x.dim() == 2, "rope_3d: input must be f32 [L, H*D], got {}", x.str());
  IB_CHECK(num_heads > 0 && x.size(1) % num_heads == 0, "rope_3d: {} features do not split into {} heads",
           x.size(1), num_heads);
  const int64_t d = x.size(1) / num_heads;
  IB_CHECK(d % 2 == 0, "rope_3d: head dim {} must be even", d);
  IB_CHECK(grid.frames > 0 && grid.height > 0 && grid.width > 0, "rope_3d: empty grid ({}, {}, {})", grid.frames,
           grid.height, grid.width);
  // Upstream precomputes 1024 positions per axis; larger grids are outside what the model saw.
  IB_CHECK(grid.frames <= 1024 && grid.height <= 1024 && grid.width <= 1024,
           "rope_3d: grid ({}, {}, {}) exceeds 1024 positions on an axis", grid.frames, grid.height, grid.width);
  IB_CHECK(x.size(0) == grid.frames * grid.height * grid.width, "rope_3d: {} tokens for a ({}, {}, {}) grid",
           x.size(0), grid.frames, grid.height, grid.width);
  const Device dev = same_device("rope_3d", {&x});
  Tensor y = Tensor::empty(x.shape(), DType::F32, dev);
  IB_DISPATCH(dev, rope_3d, x, num_heads, grid, y);
  return y;
}

}  // namespace ib::ops
